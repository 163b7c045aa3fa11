"""The errors the core raises for bad input: each message is one line that names the problem
and the fix, so the command line can print it as it is (exit code 2)."""


class ConfigError(ValueError):
    """A setting is out of range or unknown; the message says which and how to fix it."""


class DataError(ValueError):
    """A data set cannot be built; the message names the problem and the fix in one line."""
