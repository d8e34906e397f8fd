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


ECHO_LIMIT = 200  # characters of user input an error message repeats


def shown(value, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)` for an error message, cut to `limit` characters with the full length said, so that a long
    input (a 4,000-character sentence, a binary line) cannot turn one error line into a page.

        shown("x" * 4000)   # "'xxxx...xxx'... (4000 characters)"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(value))} characters)"
