"""Where sweep points run: `local` (subprocesses on this machine) and `ray` (Ray tasks)."""
