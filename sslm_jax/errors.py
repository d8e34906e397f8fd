"""Errors that mean "the user's input is wrong": the CLI prints them as one line and exits non-zero.

Library code raises `SslmError` (a `ValueError`, so research code can catch the usual type) with a message
that names the file or setting and says what to do. Anything else is a bug and keeps its traceback.
"""


class SslmError(ValueError):
    """Bad input: a file, a setting or a checkpoint that cannot be used as given."""


class ConfigError(SslmError):
    """A configuration value is invalid or inconsistent."""


class DataError(SslmError):
    """A corpus, vocabulary or labelled file cannot be read as asked."""


class CheckpointError(SslmError):
    """A checkpoint is missing, incomplete or does not match the model."""
