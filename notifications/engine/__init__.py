"""The engine: what the workers run. Services hand work to it; it asks notifiers to deliver.

    queue       the only module that imports django_q: enqueue fan-outs, pages, deliveries, digests
    audience    who an audience is
    planning    which deliveries a notification makes for a recipient, and when (preferences, quiet hours)
    fanout      the audience in pages, each planned once
    delivery    claim, send through the notifier, record each outcome
    digest      the daily digest email
    escalation  the next rung for whoever has not acknowledged
    sweep       the periodic job that takes back, resumes and retries what was lost
    metrics     fan-out lag, and the gauges read at scrape time (deliveries, queue, breakers, workers)
    retention   the daily purge of deliveries and inbox messages older than their settings

Its public interface is the names below; the tasks (notifications.tasks) call them.
"""

from .delivery import deliveries_send, notification_refresh_status
from .digest import digests_enqueue, digests_send
from .escalation import escalations_run, notification_escalate
from .fanout import fanout_page_plan, notification_fan_out
from .retention import deliveries_purge, inbox_messages_purge, retention_purge
from .sweep import deliveries_sweep

__all__ = [
    "deliveries_purge", "deliveries_send", "deliveries_sweep", "digests_enqueue", "digests_send", "escalations_run",
    "fanout_page_plan", "inbox_messages_purge", "notification_escalate", "notification_fan_out",
    "notification_refresh_status", "retention_purge",
]
