"""Services: what the doors (admin, pages, API, commands) call. Writes go through here.

    approval     the two-person rule: approve or refuse an emergency alert awaiting approval
    sending      notification_validate (every door's one validation), notification_send, audience checks, previews
    operations   cancel, retry, resend to the unacknowledged, channel tests, retention purges
    receipts     provider receipts applied to deliveries
    checkin      text messages received: check-in answers, STOP/START/HELP (signal receiver)
    preferences  a user's category × channel grid
    inbox        read and acknowledge
    batches      personalised CSV batches
    monitoring   readiness checks and the Prometheus exposition (what the probes call)

The engine (notifications.engine) is what workers run; services hand work to it.
"""

from .approval import notification_approve, notification_reject
from .operations import (
    TESTABLE_CHANNELS,
    channel_send_test,
    deliveries_purge,
    deliveries_retry,
    inbox_messages_purge,
    notification_cancel,
    notification_resend_unacknowledged,
    retention_purge,
)
from .receipts import delivery_record_receipt
from .sending import (
    IdempotencyConflict,
    audience_check,
    clean_audience,
    notification_preview,
    notification_send,
    needs_approval,
    notification_validate,
    send_check,
)

__all__ = [
    "TESTABLE_CHANNELS", "IdempotencyConflict", "audience_check", "channel_send_test", "clean_audience",
    "deliveries_purge", "deliveries_retry", "delivery_record_receipt", "inbox_messages_purge", "needs_approval",
    "notification_approve", "notification_cancel", "notification_preview", "notification_reject",
    "notification_resend_unacknowledged", "notification_send", "notification_validate", "retention_purge",
    "send_check",
]
