class TransportError(Exception):
    """A channel could not send. `permanent` failures are never retried."""

    def __init__(self, message, *, permanent=False, retry_after=None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after

    def __str__(self):
        return self.message
