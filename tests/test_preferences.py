"""Preferences: on/off per category and channel, defaults, quiet hours, security, reachability, the grid."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from channels_app.models import PushSubscription
from notifications.models import CategoryDefault, Delivery, Preference
from notifications.services.preferences import preference_grid, preferences_save
from notifications.engine import notification_fan_out
from notifications.services import notification_send

from .conftest import make_user

UTC = dt.timezone.utc


def fan_out(users, *, now, notifier="academic", category="announcement", priority="normal", channels=None, **data):
    notification, _ = notification_send(
        sender=None, notifier=notifier, category=category, priority=priority, title="Title", body="Body",
        channels=channels, audience={"users": [u.username for u in users]}, data=data,
    )
    return notification_fan_out(notification.pk, now=now)


def planned(notification, user):
    """{channel: (status, next_attempt_at, skip_reason)} for one recipient."""
    return {d.channel: (d.status, d.next_attempt_at, d.skip_reason)
            for d in Delivery.objects.filter(notification=notification, recipient=user)}


def made(notification, user):
    """The channels a recipient gets it on (not skipped)."""
    return {d.channel for d in Delivery.objects.filter(notification=notification, recipient=user)
            .exclude(status="skipped")}


def reasons(notification, user):
    """{channel: reason} for one recipient's deliveries."""
    return dict(Delivery.objects.filter(notification=notification, recipient=user).values_list("channel", "reason"))


NOON = dt.datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def test_it_follows_each_users_choice_per_category_and_channel(db):
    keen = make_user("keen")
    quiet = make_user("quiet")
    preferences_save(quiet, channels={"grade": {"email": False}})

    grade = fan_out([keen, quiet], now=NOON, category="grade", channels=["email", "inbox"])
    announcement = fan_out([keen, quiet], now=NOON, category="announcement", channels=["email", "inbox"])

    assert made(grade, keen) == {"email", "inbox"}
    assert made(grade, quiet) == {"inbox"}
    assert reasons(grade, quiet) == {"email": "opted_out", "inbox": ""}  # recorded, with why
    assert made(announcement, quiet) == {"email", "inbox"}  # only grades were turned off


def test_it_uses_the_administrators_category_defaults_until_the_user_chooses(db):
    CategoryDefault.objects.create(category="timetable", channel="email", enabled=False)
    undecided = make_user("undecided")
    chooser = make_user("chooser")
    preferences_save(chooser, channels={"timetable": {"email": True}})

    notification = fan_out([undecided, chooser], now=NOON, category="timetable", channels=["email", "inbox"])

    assert made(notification, undecided) == {"inbox"}
    assert reasons(notification, undecided)["email"] == "default_off"  # nobody chose: not an opt-out
    assert made(notification, chooser) == {"email", "inbox"}


def test_it_sends_no_sms_by_default_except_for_security(db):
    student = make_user("s1", phone="+33612345678", phone_verified_at=NOON)

    announcement = fan_out([student], now=NOON, category="announcement", channels=["sms", "inbox"])
    alert = fan_out([student], now=NOON, notifier="security", category="security", channels=["sms", "inbox"],
                    severity="high")

    assert made(announcement, student) == {"inbox"}
    assert reasons(announcement, student)["sms"] == "default_off"
    assert planned(alert, student)["sms"][0] == "queued"


@pytest.mark.parametrize("zone, now, quiet_until", [
    # Paris, winter (UTC+1): 22:30 local is quiet until 07:00 local = 06:00 UTC next day.
    ("Europe/Paris", dt.datetime(2026, 1, 15, 21, 30, tzinfo=UTC), dt.datetime(2026, 1, 16, 6, 0, tzinfo=UTC)),
    # Tokyo (UTC+9): the same instant is 06:30 on the 16th locally — another date — quiet until 22:00 UTC.
    ("Asia/Tokyo", dt.datetime(2026, 1, 15, 21, 30, tzinfo=UTC), dt.datetime(2026, 1, 15, 22, 0, tzinfo=UTC)),
    # New York (UTC-5): 16:30 local, not quiet.
    ("America/New_York", dt.datetime(2026, 1, 15, 21, 30, tzinfo=UTC), None),
    # Paris, the night clocks go forward (29 March 2026): 07:00 CEST is 05:00 UTC, not 06:00.
    ("Europe/Paris", dt.datetime(2026, 3, 28, 21, 30, tzinfo=UTC), dt.datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),
    # Paris, the night clocks go back (25 October 2026): 07:00 CET is 06:00 UTC.
    ("Europe/Paris", dt.datetime(2026, 10, 24, 20, 30, tzinfo=UTC), dt.datetime(2026, 10, 25, 6, 0, tzinfo=UTC)),
    # New York, spring forward (8 March 2026): quiet 23:00 EST until 07:00 EDT = 11:00 UTC.
    ("America/New_York", dt.datetime(2026, 3, 8, 4, 0, tzinfo=UTC), dt.datetime(2026, 3, 8, 11, 0, tzinfo=UTC)),
])
def test_it_holds_non_urgent_deliveries_until_quiet_hours_end_in_the_users_zone(db, zone, now, quiet_until):
    student = make_user("s1", timezone=zone, quiet_hours_start=dt.time(22), quiet_hours_end=dt.time(7))

    notification = fan_out([student], now=now, channels=["email", "inbox"])

    for status, at, _ in planned(notification, student).values():
        assert status == "queued"
        assert at == (quiet_until or now)


def test_it_sends_urgent_and_security_at_once_during_quiet_hours(db):
    night = dt.datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
    student = make_user("s1", timezone="UTC", quiet_hours_start=dt.time(22), quiet_hours_end=dt.time(7))

    urgent = fan_out([student], now=night, priority="urgent", channels=["email"])
    alert = fan_out([student], now=night, notifier="security", category="security", channels=["email", "inbox"],
                    severity="high")

    assert planned(urgent, student)["email"][1] == night
    assert {at for _, at, _ in planned(alert, student).values()} == {night}


def test_it_sends_security_alerts_despite_opt_outs_and_quiet_hours(db):
    night = dt.datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
    student = make_user("s1", phone="+33612345678", phone_verified_at=NOON,
                        quiet_hours_start=dt.time(22), quiet_hours_end=dt.time(7))
    # Written directly: the preference service refuses to turn security off (tested below).
    Preference.objects.bulk_create(Preference(user=student, category="security", channel=channel, enabled=False)
                                   for channel in ("email", "sms", "push", "inbox"))

    alert = fan_out([student], now=night, notifier="security", category="security", severity="critical",
                    channels=["sms", "email", "inbox"])

    assert planned(alert, student) == {channel: ("queued", night, "") for channel in ("sms", "email", "inbox")}


def test_it_skips_a_channel_the_user_cannot_receive_on_and_records_why(db):
    student = make_user("s1", phone="+33612345678")  # not verified
    preferences_save(student, channels={"grade": {"sms": True}})

    notification = fan_out([student], now=NOON, category="grade", channels=["sms", "push", "inbox"])

    rows = planned(notification, student)
    assert rows["sms"] == ("skipped", rows["sms"][1], "no verified phone number")
    assert rows["push"][0] == "skipped" and rows["push"][2] == "no push subscription"
    assert rows["inbox"][0] == "queued"


def test_it_falls_back_to_the_notifiers_fallback_channel(db):
    student = make_user("s1")
    opted_out = make_user("s2")
    preferences_save(opted_out, channels={"grade": {"email": False}})
    subscribed = make_user("s3")
    PushSubscription.objects.create(user=subscribed, endpoint="https://push.example/1", p256dh="k", auth="a")

    notification = fan_out([student, opted_out, subscribed], now=NOON, category="grade", channels=["push"])

    assert planned(notification, student)["email"][0] == "queued"  # AcademicNotifier: push → email
    assert planned(notification, student)["push"][0] == "skipped"
    assert "email" not in planned(notification, opted_out)  # a fallback respects opt-outs
    assert set(planned(notification, subscribed)) == {"push"}


def test_it_falls_back_from_push_to_sms_for_a_security_alert(db):
    student = make_user("s1", phone="+33612345678", phone_verified_at=NOON)

    alert = fan_out([student], now=NOON, notifier="security", category="security", severity="high",
                    channels=["push", "inbox"])

    rows = planned(alert, student)
    assert rows["push"][:1] == ("skipped",) and rows["sms"][0] == "queued"


def test_it_gives_the_full_grid_with_defaults_and_mandatory_categories(db):
    CategoryDefault.objects.create(category="grade", channel="sms", enabled=True, digest=False)
    student = make_user("s1")
    Preference.objects.create(user=student, category="grade", channel="email", enabled=False)

    grid = preference_grid(student)

    rows = {row["category"]: row for row in grid["categories"]}
    assert list(rows) == ["announcement", "deadline", "grade", "timetable", "administrative", "security"]
    assert rows["grade"]["channels"]["email"] == {"enabled": False, "default": True, "chosen": True}
    assert rows["grade"]["channels"]["sms"] == {"enabled": True, "default": True, "chosen": False}
    assert rows["announcement"]["channels"]["sms"]["enabled"] is False
    assert rows["security"]["mandatory"] and all(c["enabled"] for c in rows["security"]["channels"].values())
    assert not rows["grade"]["mandatory"]
    assert "Security" in grid["notice"]
    assert grid["settings"]["digest_hour"] == 18


def test_it_saves_changes_and_returns_what_changed(db):
    student = make_user("s1")
    Preference.objects.create(user=student, category="grade", channel="email", enabled=False)

    changes = preferences_save(
        student, channels={"grade": {"email": True, "inbox": True}, "announcement": {"push": False}},
        digests={"announcement": True}, settings={"timezone": "Europe/Paris", "quiet_hours_start": "22:00",
                                                  "quiet_hours_end": "07:00"},
    )

    assert {(c["category"], c["channel"], c["field"], c["old"], c["new"]) for c in changes} == {
        ("grade", "email", "enabled", False, True),
        ("announcement", "push", "enabled", True, False),
        ("announcement", "email", "digest", False, True),
        (None, None, "timezone", "UTC", "Europe/Paris"),
        (None, None, "quiet_hours_start", None, dt.time(22)),
        (None, None, "quiet_hours_end", None, dt.time(7)),
    }
    student.refresh_from_db()
    assert student.quiet_hours_start == dt.time(22)
    assert Preference.objects.get(user=student, category="announcement", channel="email").digest is True
    assert preferences_save(student, channels={"grade": {"email": True}}) == []


def test_it_refuses_to_turn_off_security_and_saves_nothing_from_a_bad_request(db):
    student = make_user("s1")

    with pytest.raises(ValidationError) as error:
        preferences_save(student, channels={"grade": {"email": False}, "security": {"sms": False}},
                         settings={"timezone": "Mars/Olympus"})

    assert "cannot be turned off" in str(error.value.message_dict["channels"])
    assert "timezone" in error.value.message_dict
    assert not Preference.objects.exists()
    student.refresh_from_db()
    assert student.timezone == "UTC"
