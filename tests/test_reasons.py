"""Why didn't X get it? Every requested recipient × channel is recorded, with a reason when it was
not delivered (skipped, cancelled) or not yet (held), and the reason is shown by the API, the
console's watch page and `manage.py delivery_report`."""

import csv
import datetime as dt
import io

from django.core.management import call_command

from notifications.engine import notification_fan_out
from notifications.models import Delivery, Notification, Preference
from notifications.services import delivery_record_receipt, notification_cancel, notification_send
from notifications.services.preferences import preferences_save

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client
from .conftest import make_user
from .delivery_helpers import fan_out_and_send

UTC = dt.timezone.utc
NOON = dt.datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
VERIFIED = dict(phone="+33612345678", phone_verified_at=NOON)


def send(users, *, sender=None, channels=("email", "sms"), category="announcement", notifier="academic", **fields):
    notification, _ = notification_send(
        sender=sender, notifier=notifier, category=category, title="Campus closed", body="Snow.",
        channels=list(channels), audience={"users": [u.username for u in users]}, **fields)
    return notification


def rows(notification, user):
    """{channel: (status, reason, reason_text)} of one recipient."""
    return {d.channel: (d.status, d.reason_code, d.reason_text)
            for d in Delivery.objects.filter(notification=notification, recipient=user)}


def test_it_records_why_each_requested_channel_was_not_sent(db):
    opted_out = make_user("s1", **VERIFIED)
    preferences_save(opted_out, channels={"announcement": {"sms": False}})
    undecided = make_user("s2", **VERIFIED)  # SMS is off by default for announcements
    no_email = make_user("s3", email="")
    unverified = make_user("s4", phone="+33612345679")
    preferences_save(unverified, channels={"announcement": {"sms": True}})

    notification = send([opted_out, undecided, no_email, unverified])
    notification_fan_out(notification.pk, now=NOON)

    assert rows(notification, opted_out)["sms"] == ("skipped", "opted_out", "Opted out")
    assert rows(notification, undecided)["sms"] == ("skipped", "default_off", "Category default off")
    assert rows(notification, no_email)["email"] == ("skipped", "no_address", "no email address")
    assert rows(notification, unverified)["sms"] == ("skipped", "phone_not_verified", "no verified phone number")
    assert Delivery.objects.filter(notification=notification).count() == 8  # 4 recipients × 2 channels


def test_it_says_until_when_a_delivery_is_held(db):
    night = dt.datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
    sleeper = make_user("s1", timezone="UTC", quiet_hours_start=dt.time(22), quiet_hours_end=dt.time(7))
    gatherer = make_user("s2", timezone="UTC", digest_hour=18)
    preferences_save(gatherer, channels={"announcement": {"email": True}}, digests={"announcement": True})

    quiet = send([sleeper], channels=["email"])
    notification_fan_out(quiet.pk, now=night)
    low = send([gatherer], channels=["email"], priority="low")
    notification_fan_out(low.pk, now=NOON)

    assert rows(quiet, sleeper)["email"] == ("queued", "quiet_hours",
                                             "held for quiet hours until 2026-01-16 07:00 UTC")
    assert rows(low, gatherer)["email"] == ("queued", "digest", "held for the daily digest at 2026-01-15 18:00 UTC")


def test_it_suppresses_an_address_after_a_hard_bounce_except_for_security_alerts(db):
    student = make_user("s1")
    first = send([student], channels=["email"])
    fan_out_and_send(first)
    bounced = Delivery.objects.get(notification=first)
    # As if sent through an ESP, which reports the bounce (receipts move only what went through their ESP).
    Delivery.objects.filter(pk=bounced.pk).update(provider_message_id="Postmark:pm-1")
    delivery_record_receipt(channel="email", provider="Postmark", provider_message_id="pm-1", event="bounced",
                            reason="mailbox does not exist", delivery_id=bounced.pk)

    later = send([student], channels=["email", "inbox"])
    notification_fan_out(later.pk)
    alert = send([student], notifier="security", category="security", channels=["email"], data={"severity": "high"})
    notification_fan_out(alert.pk)

    status, reason, text = rows(later, student)["email"]
    assert (status, reason) == ("skipped", "suppressed") and "bounce" in text
    assert rows(later, student)["inbox"][0] == "queued"
    assert rows(alert, student)["email"][0] == "queued"  # an emergency is still tried


def test_it_finishes_a_notification_nobody_takes_and_says_why_on_the_watch_page(client, admin_user):
    student = make_user("s1", **VERIFIED)
    preferences_save(student, channels={"announcement": {"email": False, "sms": False}})

    notification = send([student], sender=admin_user)
    fan_out_and_send(notification)
    notification.refresh_from_db()
    client.force_login(admin_user)
    page = client.get(f"/admin/notifications/notification/{notification.pk}/change/")
    progress = client.get(f"/admin/notifications/notification/{notification.pk}/progress.json").json()

    assert notification.status == Notification.Status.SENT  # skipped rows are final, not pending
    assert progress["final"] and progress["percent"] == 100 and progress["pending"] == 0
    html = page.content.decode()
    assert '<span id="reached">0</span> of <span id="audience">1</span> recipients reached' in html
    assert "not reached: 1 opted out</span>" in html
    reasons = page.context["status"]["reasons"]
    assert [label for _, label in reasons["columns"]] == ["Email", "SMS"]
    assert {"code": "opted_out", "label": "Opted out", "counts": [1, 1]} in reasons["rows"]
    assert page.context["reach"]["unreached"] == [{"reason": "opted_out", "label": "opted out", "people": 1}]


def test_it_counts_people_not_rows_in_the_reach_with_its_reasons(client, admin_user):
    reached = make_user("s1")
    opted_out = make_user("s2")
    preferences_save(opted_out, channels={"announcement": {"email": False}})

    notification = send([reached, opted_out], sender=admin_user, channels=["email", "inbox"])
    fan_out_and_send(notification)
    client.force_login(admin_user)
    page = client.get(f"/admin/notifications/notification/{notification.pk}/change/")

    reach = page.context["reach"]
    assert (reach["reached"], reach["recipients"]) == (2, 2)  # s2 was reached in the inbox
    assert reach["unreached"] == []
    assert {"code": "opted_out", "label": "Opted out", "counts": [1]} in page.context["status"]["reasons"]["rows"]


def test_it_gives_reasons_and_a_per_recipient_explanation_through_the_api(staff_user, cohort):
    student = make_user("s1000050", **VERIFIED)
    cohort.members.add(student)
    preferences_save(student, channels={"timetable": {"sms": False}})
    notification, _ = notification_send(
        sender=staff_user, notifier="academic", category="timetable", title="Room change", body="B12.",
        channels=["email", "sms"], audience={"cohorts": [cohort.code]})
    fan_out_and_send(notification)
    api = jwt_client(staff_user)

    deliveries = api.get(f"{API}notifications/{notification.pk}/deliveries/", {"channel": "sms"}).json()["results"]
    explained = api.get(f"{API}notifications/{notification.pk}/explain/", {"recipient": "s1000050"})

    assert [(d["status"], d["reason"], d["reason_text"]) for d in deliveries] == [
        ("skipped", "opted_out", "Opted out")]
    assert explained.status_code == 200
    body = explained.json()
    assert body["recipient"] == "s1000050" and body["reached"] is True
    states = {line["channel"]: (line["status"], line["reason"], line["reason_text"]) for line in body["channels"]}
    assert states == {"email": ("sent", "", ""), "sms": ("skipped", "opted_out", "Opted out")}


def test_it_explains_only_recipients_of_notifications_the_caller_may_see(staff_user, cohort, other_cohort):
    student = make_user("s1000051")
    cohort.members.add(student)
    mine, _ = notification_send(sender=staff_user, notifier="academic", category="timetable", title="T", body="B",
                                channels=["email"], audience={"cohorts": [cohort.code]})
    theirs, _ = notification_send(sender=None, notifier="academic", category="timetable", title="T", body="B",
                                  channels=["email"], audience={"cohorts": [other_cohort.code]})
    api = jwt_client(staff_user)

    not_planned = api.get(f"{API}notifications/{mine.pk}/explain/", {"recipient": "s1000051"}).json()
    assert not_planned["channels"] == [{**not_planned["channels"][0], "status": "pending",
                                        "reason_text": "not planned yet"}]
    assert api.get(f"{API}notifications/{mine.pk}/explain/", {"recipient": "s2000100"}).status_code == 404
    assert api.get(f"{API}notifications/{mine.pk}/explain/").status_code == 400
    assert api.get(f"{API}notifications/{theirs.pk}/explain/", {"recipient": "s2000100"}).status_code == 404
    assert jwt_client(student).get(f"{API}notifications/{mine.pk}/explain/",
                                   {"recipient": "s1000051"}).status_code == 403


def test_it_reads_a_cancelled_delivery_as_cancelled(db):
    student = make_user("s1")
    notification = send([student], channels=["email"])
    notification_fan_out(notification.pk)

    notification_cancel(notification)

    assert rows(notification, student)["email"] == ("cancelled", "cancelled", "Cancelled")


def test_it_reports_reasons_per_channel_and_in_a_column(db):
    students = [make_user(f"s{n}") for n in range(3)]
    for student in students[:2]:
        Preference.objects.create(user=student, category="announcement", channel="email", enabled=False)
    notification = send(students, channels=["email", "inbox"])
    fan_out_and_send(notification)

    summary = io.StringIO()
    call_command("delivery_report", str(notification.pk), stdout=summary)
    table = io.StringIO()
    call_command("delivery_report", str(notification.pk), "--csv", "--status", "skipped", stdout=table)

    assert "Not delivered, or not yet, by reason:" in summary.getvalue()
    assert "  email  opted out 2" in summary.getvalue()
    lines = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert [(line["username"], line["reason"], line["error"]) for line in lines] == [
        ("s0", "opted_out", "Opted out"), ("s1", "opted_out", "Opted out")]


def test_it_counts_opt_outs_per_channel_before_sending(client, staff_user, cohort):
    keen, quiet = make_user("s1000060"), make_user("s1000061")
    cohort.members.add(keen, quiet)
    preferences_save(quiet, channels={"timetable": {"email": False}})
    client.force_login(staff_user)

    response = client.post("/admin/notifications/notification/add/", {
        "notifier": "academic", "category": "timetable", "priority": "normal", "channels": ["email", "inbox"],
        "title": "Room change", "body": "B12.", "cohorts": [cohort.pk], "users": "", "token": "tok-reasons"})

    email = next(row for row in response.context["rows"] if row["channel"] == "email")
    assert (email["receive"], email["not_received"]) == (1, 1)
    assert [(line["code"], line["people"]) for line in email["reasons"]] == [("opted_out", 1)]
    page = response.content.decode()
    assert "1 of 2" in page and "1 — Opted out (turned off by the recipients themselves in their preferences)" in page
