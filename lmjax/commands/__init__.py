"""Subcommands of the `lmjax` CLI; each module has `register(subparsers)`."""
