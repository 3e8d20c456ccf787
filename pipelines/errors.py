"""Failures of the input rather than of the machinery: a retry cannot fix them, so tasks fail at once."""


class InputError(ValueError):
    """Bad input to a run: a landed file, a batch, a target, a form's data interval. The message says which
    and why."""


class DataError(InputError):
    """Landed data that cannot be used as it is: the message names the file or batch, the column and why."""


class StaleComparisonError(InputError):
    """The champion a candidate was judged against is no longer the champion (it moved while the candidate
    waited, e.g. for a person's approval): promoting it would skip the comparison that matters."""

