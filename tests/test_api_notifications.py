"""Sending and reading notifications through the API: idempotency, filters, cursor pages, delivery counts,
cancel, deliveries and preview. Accepting never sends on the request path."""

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from notifications.models import Delivery, Notification
from notifications.services import notification_send

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client, send_body


def test_it_accepts_a_notification_and_hands_fan_out_to_the_workers(staff_user, members,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = jwt_client(staff_user).post(f"{API}notifications/", send_body(), format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued" and body["sender"] == staff_user.username
    assert body["audience"] == {"cohorts": ["cs101-2026"]} and body["delivery_counts"] == {}
    assert Delivery.objects.count() == 0 and mail.outbox == []  # nothing sent on the request path
    assert len(callbacks) == 1  # the fan-out task, enqueued after commit


def test_it_replays_the_same_request_with_the_same_idempotency_key(staff_user, members):
    client = jwt_client(staff_user)
    first = client.post(f"{API}notifications/", send_body(), format="json", HTTP_IDEMPOTENCY_KEY="sis-42")
    again = client.post(f"{API}notifications/", send_body(), format="json", HTTP_IDEMPOTENCY_KEY="sis-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Notification.objects.count() == 1


def test_it_refuses_a_different_request_with_a_used_idempotency_key(staff_user, members):
    client = jwt_client(staff_user)
    client.post(f"{API}notifications/", send_body(), format="json", HTTP_IDEMPOTENCY_KEY="sis-43")
    conflict = client.post(f"{API}notifications/", send_body(title="Other"), format="json",
                           HTTP_IDEMPOTENCY_KEY="sis-43")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"
    assert Notification.objects.count() == 1


def test_it_keeps_idempotency_keys_per_sender(staff_user, admin_user, members):
    first = jwt_client(staff_user).post(f"{API}notifications/", send_body(), format="json",
                                        HTTP_IDEMPOTENCY_KEY="same")
    other = jwt_client(admin_user).post(f"{API}notifications/", send_body(), format="json",
                                        HTTP_IDEMPOTENCY_KEY="same")
    assert (first.status_code, other.status_code) == (201, 201)
    assert first.json()["id"] != other.json()["id"]


def test_it_reports_service_validation_as_field_errors(staff_user, cohort):
    response = jwt_client(staff_user).post(f"{API}notifications/", send_body(
        notifier="security", category="timetable", audience={"cohorts": ["nope"]}), format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "category" in errors and "audience" in errors and "data" in errors
    assert Notification.objects.count() == 0


def test_it_lists_with_filters_and_cursor_pages(admin_user, staff_user, cohort):
    client = jwt_client(admin_user)
    for n in range(5):
        notification_send(sender=admin_user if n % 2 else staff_user, notifier="academic",
                          category="grade" if n < 2 else "timetable", title=f"n{n}", body="b",
                          audience={"cohorts": [cohort.code]}, channels=["inbox"])
    page = client.get(f"{API}notifications/", {"page_size": 2}).json()
    assert [n["title"] for n in page["results"]] == ["n4", "n3"] and page["next"]
    second = client.get(page["next"]).json()
    assert [n["title"] for n in second["results"]] == ["n2", "n1"]
    grades = client.get(f"{API}notifications/", {"category": "grade"}).json()["results"]
    assert sorted(n["title"] for n in grades) == ["n0", "n1"]
    by_staff = client.get(f"{API}notifications/", {"sender": staff_user.username}).json()["results"]
    assert sorted(n["title"] for n in by_staff) == ["n0", "n2", "n4"]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert client.get(f"{API}notifications/", {"created_after": future}).json()["results"] == []
    assert len(client.get(f"{API}notifications/", {"created_before": future}).json()["results"]) == 5
    bad = client.get(f"{API}notifications/", {"status": "nope", "created_after": "yesterday"})
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"status", "created_after"}


def test_it_shows_delivery_counts_and_filters_deliveries(admin_user, members):
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="grade", title="t",
                                        body="b", audience={"users": [m.username for m in members]},
                                        channels=["email", "inbox"])
    Delivery.objects.bulk_create(
        [Delivery(notification=notification, recipient=m, channel="email", status="sent") for m in members]
        + [Delivery(notification=notification, recipient=members[0], channel="inbox", status="failed")])
    client = jwt_client(admin_user)
    detail = client.get(f"{API}notifications/{notification.pk}/").json()
    assert detail["delivery_counts"] == {"email": {"sent": 3}, "inbox": {"failed": 1}}
    failed = client.get(f"{API}notifications/{notification.pk}/deliveries/", {"status": "failed"}).json()
    assert [(d["recipient"], d["channel"]) for d in failed["results"]] == [(members[0].username, "inbox")]
    mine = client.get(f"{API}notifications/{notification.pk}/deliveries/", {"recipient": members[1].username})
    assert [d["channel"] for d in mine.json()["results"]] == ["email"]


def test_it_cancels_once_then_answers_409(admin_user, cohort):
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="grade", title="t",
                                        body="b", audience={"cohorts": [cohort.code]})
    client = jwt_client(admin_user)
    response = client.post(f"{API}notifications/{notification.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client.post(f"{API}notifications/{notification.pk}/cancel/")
    assert again.status_code == 409 and again.json()["code"] == "not_cancellable"


def test_it_previews_for_a_recipient_of_the_audience_only(admin_user, members, other_cohort):
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="grade",
                                        title="Grades are out", body="See the portal.",
                                        audience={"cohorts": ["cs101-2026"]}, channels=["email", "inbox"])
    client = jwt_client(admin_user)
    preview = client.get(f"{API}notifications/{notification.pk}/preview/", {"recipient": members[0].username})
    assert preview.status_code == 200
    assert set(preview.json()) == {"email", "inbox"}
    assert "Grades are out" in preview.json()["email"]["subject"]
    outsider = other_cohort.members.first()
    assert client.get(f"{API}notifications/{notification.pk}/preview/",
                      {"recipient": outsider.username}).status_code == 404
