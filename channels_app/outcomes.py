"""What happened to one message, and the signal that stops a batch between two messages."""

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What happened to one message. The engine turns it into a delivery's state."""

    delivery_id: int
    ok: bool
    provider_message_id: str = ""
    error: str = ""
    permanent: bool = False
    retry_after: float | None = None
    provider_failure: bool = False  # the provider itself failed (counts for the circuit breaker)
    attempted: bool = True  # False when nothing was tried (breaker open): the attempt is not counted
    extra: dict = field(default_factory=dict)

    @classmethod
    def sent(cls, message, provider_message_id=""):
        return cls(message.delivery_id, True, provider_message_id=provider_message_id)

    @classmethod
    def permanent_failure(cls, message, error):
        return cls(message.delivery_id, False, error=error, permanent=True)

    @classmethod
    def transient_failure(cls, message, error, *, retry_after=None, provider_failure=False, attempted=True):
        return cls(message.delivery_id, False, error=error, retry_after=retry_after,
                   provider_failure=provider_failure, attempted=attempted)


class StopSending(Exception):
    """Raised by an `on_outcome` callback: the batch takes no more messages.

    The notifier closes the running step (its connection is closed by the step's `finally`)
    and returns the outcomes reported so far; the caller owns the messages left unsent.
    """

    def __init__(self, reason=""):
        super().__init__(reason)
        self.reason = reason
