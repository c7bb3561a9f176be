"""Logs carry the ids of what they are about; LOG_FORMAT=json makes one JSON object per line."""

import json

import pytest

from notifications.models import Delivery, Notification
from notifications.services import notification_send

from .delivery_helpers import closed_breakers, students  # noqa: F401
from .peers import wait_until


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closed_breakers")
def test_it_logs_json_lines_with_notification_and_delivery_ids(broker, smtp_peer, workers, admin_user):
    reached, refused = students("s8000", 2)
    smtp_peer.refuse.add(refused.email)
    worker = workers(LOG_FORMAT="json", LOG_LEVEL="DEBUG", Q_LOG_LEVEL="WARNING")

    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Library hours", body="Open late.", channels=["email"],
                                        audience={"users": [reached.username, refused.username]})
    wait_until(lambda: Notification.objects.get(pk=notification.pk).status == "partially_failed", timeout=60,
               message="the notification finished")
    deliveries = {d.recipient_id: d.pk for d in Delivery.objects.filter(notification=notification)}

    def finished():
        lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
        return lines if any(r["message"] == f"notification {notification.pk} partially_failed" for r in lines) else None

    records = wait_until(finished, message="the worker's JSON log lines")
    ours = [r for r in records if r.get("notification_id") == notification.pk]
    assert {"level", "logger", "message", "time"} <= set(ours[0])
    levels = {(r["level"], r["message"]) for r in ours}
    assert ("INFO", f"notification {notification.pk} sending") in levels
    assert ("INFO", f"notification {notification.pk} partially_failed") in levels
    assert ("DEBUG", f"delivery {deliveries[reached.pk]} sending (attempt 1)") in levels
    assert ("DEBUG", f"delivery {deliveries[reached.pk]} sent") in levels
    assert ("DEBUG", f"delivery {deliveries[refused.pk]} failed") in levels
    warning = next(r for r in ours if r["level"] == "WARNING")
    assert warning["delivery_id"] == deliveries[refused.pk] and warning["message"].startswith("provider error on email")
    delivery_lines = [r for r in ours if r["message"].startswith("delivery ")]
    assert all(r["delivery_id"] in deliveries.values() for r in delivery_lines)
