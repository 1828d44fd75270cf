"""Where sweep points run, the executors: `local` (subprocesses on this machine) and `ray` (Ray tasks)."""
