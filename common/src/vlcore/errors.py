"""Errors that stand for bad input rather than bugs.

Entry points turn these into one line on stderr and a non-zero exit
(`vlcore.cli.run_cli`); anything else keeps its traceback, because it is a bug.
"""


class UserError(Exception):
    """Base of every error caused by what the user passed in (config, files, data)."""
