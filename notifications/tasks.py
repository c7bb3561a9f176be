"""django-q2 tasks: thin wrappers, each loading nothing and calling the engine (or, for accounts, its service)."""

from accounts.invitations import invitations_send
from accounts.models import User

from . import engine


def fan_out(notification_id):
    engine.notification_fan_out(notification_id, spread=True)


def plan_page(page_id):
    return engine.fanout_page_plan(page_id)


def send_deliveries(delivery_ids):
    return engine.deliveries_send(delivery_ids)


def sweep():
    return engine.deliveries_sweep()


def send_digests(recipient_ids):
    return engine.digests_send(recipient_ids)


def retention_purge():
    return engine.retention_purge()


def send_invitations(user_ids):
    report = invitations_send(User.objects.filter(pk__in=user_ids).order_by("pk"))
    return {"sent": len(report.sent), "skipped": report.skipped_count, "failed": len(report.failed)}
