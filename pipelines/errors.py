"""Errors in the data rather than in the machinery: a retry cannot fix them, so tasks fail at once."""


class DataError(ValueError):
    """Landed data that cannot be used as it is: the message names the file or batch, the column and why."""
