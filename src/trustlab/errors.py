"""User-facing errors.

Anything the user can get wrong (a missing file or column, a bad config key, a dataset
that is not on disk) raises :class:`TrustlabError`. The CLI prints its message as one
line and exits non-zero; a traceback means a bug in trustlab, never bad input.
"""


class TrustlabError(Exception):
    """Bad input or missing resource; the message is shown to the user as is."""


class DatasetNotFound(TrustlabError):
    """A dataset's files are not present; the message says where to put them."""
