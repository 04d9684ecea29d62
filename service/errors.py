"""The service's exception hierarchy.

Third-party errors are translated into these only in the adapter that calls the library, so the
rest of the code catches a small set of types.
"""


class CspmWatchError(Exception):
    """Base class of every error the service raises on purpose."""


class ConfigError(CspmWatchError):
    """The configuration is invalid; the message names the key, the value and the fix."""


class StorageError(CspmWatchError):
    """The database failed or contains data the service cannot use."""


class NotifierError(CspmWatchError):
    """A notifier could not deliver a message.

    `retryable` tells the dispatcher whether another attempt can succeed (429, 5xx, timeouts)
    or the delivery must fail at once (bad token, unknown channel).
    """

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
