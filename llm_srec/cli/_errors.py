"""`CLIError`, the user-facing error of every subcommand, in a module of its own so that the subcommand modules and
the argument helpers import it without importing the `llm_srec.cli` package that imports them."""


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


__all__ = ["CLIError"]
