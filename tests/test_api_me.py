"""The caller's own things: inbox with unread count, read and acknowledge, preferences, push subscriptions;
and the provisioning doors: cohorts, users, metrics."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role
from channels_app.models import PushSubscription
from notifications.engine import fanout_page_plan, inbox_messages_purge, notification_fan_out
from notifications.models import FanoutPage, InboxMessage, Notification, Preference
from notifications.services import notification_approve, notification_resend_unacknowledged, notification_send

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client, key_client
from .conftest import make_user
from .delivery_helpers import BrowserKeys


def inbox_for(user, sender, n):
    messages = []
    for i in range(n):
        notification, _ = notification_send(sender=sender, notifier="security", title=f"Alert {i}", body="Stay in.",
                                            audience={"users": [user.username]}, data={"severity": "high"})
        messages.append(InboxMessage.objects.create(notification=notification, recipient=user, title=f"Alert {i}",
                                                    body="Stay in.", category="security"))
    return messages


def test_it_lists_the_callers_inbox_with_unread_count(student, admin_user):
    messages = inbox_for(student, admin_user, 3)
    other = make_user("s1000999")
    inbox_for(other, admin_user, 1)
    client = jwt_client(student)
    page = client.get(f"{API}me/inbox/", {"page_size": 2}).json()
    assert page["unread_count"] == 3
    assert [m["title"] for m in page["results"]] == ["Alert 2", "Alert 1"]
    assert page["results"][0]["requires_ack"] is True
    read = client.post(f"{API}me/inbox/{messages[0].pk}/read/")
    assert read.status_code == 200 and read.json()["read_at"]
    ack = client.post(f"{API}me/inbox/{messages[1].pk}/ack/")
    assert ack.json()["acknowledged_at"] and ack.json()["read_at"]
    assert client.get(f"{API}me/inbox/").json()["unread_count"] == 1
    assert [m["title"] for m in client.get(f"{API}me/inbox/", {"unread": "true"}).json()["results"]] == ["Alert 2"]
    theirs = InboxMessage.objects.get(recipient=other)
    assert client.get(f"{API}me/inbox/{theirs.pk}/").status_code == 404
    assert client.post(f"{API}me/inbox/{theirs.pk}/read/").status_code == 404
    assert InboxMessage.objects.get(pk=theirs.pk).read_at is None


def test_it_reads_and_changes_preferences(student):
    client = jwt_client(student)
    grid = {(p["category"], p["channel"]): p for p in client.get(f"{API}me/preferences/").json()["preferences"]}
    assert len(grid) == 24
    # The defaults the engine applies: email on, SMS only for security, security always on.
    assert grid[("grade", "email")]["enabled"] is True and grid[("grade", "sms")]["enabled"] is False
    assert all(p["enabled"] and p["mandatory"] for (category, _), p in grid.items() if category == "security")
    response = client.patch(f"{API}me/preferences/", {"preferences": [
        {"category": "grade", "channel": "sms", "enabled": True, "digest": False}]}, format="json")
    assert response.status_code == 200
    assert Preference.objects.get(user=student, category="grade", channel="sms").enabled is True
    changed = [p for p in response.json()["preferences"] if (p["category"], p["channel"]) == ("grade", "sms")]
    assert changed[0]["enabled"] is True


def test_it_refuses_turning_off_a_mandatory_category(student):
    response = jwt_client(student).patch(f"{API}me/preferences/", {"preferences": [
        {"category": "grade", "channel": "email", "enabled": False},
        {"category": "security", "channel": "sms", "enabled": False}]}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["preferences.1.enabled"]
    assert not Preference.objects.exists()  # nothing of a refused request is applied


def test_it_requires_the_whole_grid_for_put(student):
    client = jwt_client(student)
    partial = client.put(f"{API}me/preferences/", {"preferences": [
        {"category": "grade", "channel": "email", "enabled": False}]}, format="json")
    assert partial.status_code == 400
    grid = client.get(f"{API}me/preferences/").json()["preferences"]
    for row in grid:
        row["enabled"] = row["mandatory"] or row["channel"] != "sms"
    assert client.put(f"{API}me/preferences/", {"preferences": grid}, format="json").status_code == 200
    assert Preference.objects.filter(user=student, enabled=False).count() == 5


def test_it_registers_and_removes_push_subscriptions(student, push_dns):
    client = jwt_client(student)
    keys = BrowserKeys()
    body = {"endpoint": "https://fcm.googleapis.com/fcm/send/sub-1", "keys": {"p256dh": keys.p256dh, "auth": keys.auth}}
    assert client.post(f"{API}me/push-subscriptions/", body, format="json").status_code == 201
    assert client.post(f"{API}me/push-subscriptions/", body, format="json").status_code == 200
    assert PushSubscription.objects.filter(user=student).count() == 1
    other = jwt_client(make_user("s1000998"))
    assert other.delete(f"{API}me/push-subscriptions/?endpoint={body['endpoint']}").status_code == 404
    assert client.delete(f"{API}me/push-subscriptions/?endpoint={body['endpoint']}").status_code == 204
    assert not PushSubscription.objects.exists()


def test_it_provisions_users_in_bulk_with_per_row_errors(admin_user, cohort):
    client = key_client(admin_user, ["manage_users"])
    response = client.post(f"{API}users/", {"users": [
        {"username": "s7000001", "email": "a@example.edu", "cohorts": [cohort.code]},
        {"username": "s7000002", "phone": "not a phone"},
        {"username": "s7000003", "cohorts": ["missing"]},
    ]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["summary"] == {"created": 1, "updated": 0, "unchanged": 0, "invalid": 2}
    assert [r["action"] for r in body["rows"]] == ["created", "invalid", "invalid"]
    assert "phone" in body["rows"][1]["errors"] and "cohorts" in body["rows"][2]["errors"]
    members = client.get(f"{API}cohorts/{cohort.code}/members/").json()["results"]
    assert [m["username"] for m in members] == ["s7000001"]
    again = client.post(f"{API}users/", {"users": [{"username": "s7000001", "email": "a@example.edu"}]},
                        format="json").json()
    assert again["summary"]["unchanged"] == 1


def test_it_reports_metrics_with_breaker_states(admin_user):
    response = jwt_client(admin_user).get(f"{API}metrics/")
    assert response.status_code == 200
    body = response.json()
    assert [b["provider"] for b in body["breakers"]] == ["email", "sms", "push"]
    assert {b["state"] for b in body["breakers"]} == {"closed"}
    assert body["deliveries"] == {} and body["latency"] == {}
    bad = jwt_client(admin_user).get(f"{API}metrics/", {"since": "2030-01-01T00:00:00Z",
                                                         "until": "2029-01-01T00:00:00Z"})
    assert bad.status_code == 400 and "since" in bad.json()["errors"]


def test_it_reports_delivery_counts_and_send_latency_per_channel(admin_user, members):
    from datetime import timedelta

    from django.utils import timezone

    from notifications.models import Delivery

    notification, _ = notification_send(sender=admin_user, notifier="academic", category="grade", title="t",
                                        body="b", audience={"cohorts": ["cs101-2026"]}, channels=["email", "sms"])
    Delivery.objects.bulk_create([Delivery(notification=notification, recipient=m, channel="email", status="sent")
                                  for m in members] + [Delivery(notification=notification, recipient=members[0],
                                                                channel="sms", status="failed")])
    now = timezone.now()
    for seconds, delivery in zip((1, 2, 4), Delivery.objects.filter(channel="email").order_by("id")):
        Delivery.objects.filter(pk=delivery.pk).update(created_at=now - timedelta(seconds=10),
                                                       sent_at=now - timedelta(seconds=10 - seconds))
    body = jwt_client(admin_user).get(f"{API}metrics/").json()
    assert body["deliveries"] == {"email": {"sent": 3}, "sms": {"failed": 1}}
    assert body["latency"]["email"] == {"count": 3, "p50_ms": 2000.0, "p95_ms": 4000.0, "p99_ms": 4000.0}


def deliver_to_inbox(sender, users, title, *, notifier="academic", parent=None):
    """Send a notification to `users`' inboxes through the engine, as the workers would (fan-out, page task)."""
    if parent is not None:
        notification, _ = notification_resend_unacknowledged(parent, by=sender)
    else:
        notification, _ = notification_send(sender=sender, notifier=notifier, title=title, body="Details inside.",
                                            audience={"users": [u.username for u in users]}, channels=["inbox"],
                                            data={"severity": "high"} if notifier == "security" else None)
    if notification.status == Notification.Status.AWAITING_APPROVAL:  # the two-person rule: a second admin
        notification_approve(notification, by=make_user("a3000999", role=Role.ADMIN, is_superuser=True))
    notification_fan_out(notification.pk, spread=True)
    for page in FanoutPage.objects.filter(notification=notification):
        fanout_page_plan(page.pk)
    return notification


def unread(client):
    return client.get(f"{API}me/inbox/").json()["unread_count"]


@pytest.fixture
def unread_cache(settings):
    settings.INBOX_UNREAD_CACHE = True  # as with Redis; here on whichever cache the tests run


def test_the_unread_count_follows_new_read_acknowledged_unread_again_and_deleted_messages(
        student, admin_user, unread_cache, django_capture_on_commit_callbacks):
    other = make_user("s1000998")
    client = jwt_client(student)
    assert unread(client) == 0
    with django_capture_on_commit_callbacks(execute=True):
        alert = deliver_to_inbox(admin_user, [student, other], "Lockdown", notifier="security")
        exam = deliver_to_inbox(admin_user, [student], "Exam moved")
    assert unread(client) == 2  # counted once the messages came, though 0 was counted (and kept) before
    assert unread(client) == 2

    mine = {m.notification_id: m for m in InboxMessage.objects.filter(recipient=student)}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"{API}me/inbox/{mine[alert.pk].pk}/read/")
    assert unread(client) == 1
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"{API}me/inbox/{mine[exam.pk].pk}/ack/")
    assert unread(client) == 0

    with django_capture_on_commit_callbacks(execute=True):  # the resend puts the same alert back, unread
        deliver_to_inbox(admin_user, [], "", parent=alert)
    assert unread(client) == 1
    assert unread(jwt_client(other)) == 1

    with django_capture_on_commit_callbacks(execute=True):
        alert.delete()
    assert unread(client) == 0

    with django_capture_on_commit_callbacks(execute=True):
        deliver_to_inbox(admin_user, [student], "Library closed")
        InboxMessage.objects.filter(recipient=student).update(created_at=timezone.now() - timedelta(days=400))
    assert unread(client) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert inbox_messages_purge(older_than=timedelta(days=365)) == 2
    assert unread(client) == 0


def test_the_inbox_page_takes_as_many_queries_for_a_full_inbox_as_for_an_almost_empty_one(
        student, admin_user, settings, unread_cache, django_capture_on_commit_callbacks):
    settings.FANOUT_CHUNK_SIZE = 100
    client = jwt_client(student)
    counts = []
    for titles in (["Only one"], [f"Message {n}" for n in range(30)]):
        with django_capture_on_commit_callbacks(execute=True):
            for title in titles:
                deliver_to_inbox(admin_user, [student], title)
        with CaptureQueriesContext(connection) as first:
            page = client.get(f"{API}me/inbox/").json()
        with CaptureQueriesContext(connection) as again:
            assert client.get(f"{API}me/inbox/", {"unread": "true"}).status_code == 200
        assert page["unread_count"] == InboxMessage.objects.filter(recipient=student).count()
        counts.append((len(first), len(again)))

    assert counts[0] == counts[1]
    assert counts[1][1] < counts[1][0]  # the count, once kept, is not counted again
