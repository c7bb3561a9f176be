"""The daily digest: low-priority email gathered per category and sent as one email at the user's hour."""

import datetime as dt

import pytest

from notifications.engine.digest import digests_enqueue, digests_send
from notifications.models import Delivery
from notifications.services.preferences import preferences_save
from notifications.engine import deliveries_send, notification_fan_out
from notifications.services import notification_send

from .conftest import make_user

UTC = dt.timezone.utc
MORNING = dt.datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
# 18:00 in Paris in January.
DIGEST_TIME = dt.datetime(2026, 1, 15, 17, 0, tzinfo=UTC)


@pytest.fixture
def reader(db):
    user = make_user("s1", first_name="Dana", timezone="Europe/Paris", digest_hour=18)
    preferences_save(user, digests={"announcement": True, "administrative": True})
    return user


def post(user, title, *, at, category="announcement", priority="low"):
    notification, _ = notification_send(sender=None, notifier="academic", category=category, priority=priority,
                                        title=title, body=f"About {title}.", channels=["email", "inbox"],
                                        audience={"users": [user.username]})
    return notification_fan_out(notification.pk, now=at)


def email_deliveries(user):
    return Delivery.objects.filter(recipient=user, channel="email").order_by("pk")


def test_it_holds_low_priority_email_for_the_digest_hour_in_the_users_zone(reader):
    post(reader, "Club fair", at=MORNING)
    post(reader, "Exam room change", at=MORNING, priority="normal")

    held, immediate = email_deliveries(reader)
    assert (held.digest, held.next_attempt_at) == (True, DIGEST_TIME)
    assert (immediate.digest, immediate.next_attempt_at) == (False, MORNING)
    assert Delivery.objects.get(recipient=reader, channel="inbox", notification=held.notification).digest is False
    # The ordinary sender leaves held deliveries alone, even when handed them.
    assert deliveries_send([held.pk], now=DIGEST_TIME) == {}


def test_it_sends_one_email_per_category_at_the_chosen_hour(reader, smtp_peer, broker):
    for title in ("Club fair", "Library hours", "Choir auditions"):
        post(reader, title, at=MORNING)
    post(reader, "Parking permits", at=MORNING, category="administrative")
    other = make_user("s2")  # no digest: not held
    post(other, "Club fair", at=MORNING)

    assert digests_enqueue(now=DIGEST_TIME - dt.timedelta(minutes=1)) == {}
    assert digests_send([reader.pk], now=DIGEST_TIME - dt.timedelta(minutes=1)) == {}
    assert digests_enqueue(now=DIGEST_TIME) == {"digests_enqueued": 1}
    assert digests_enqueue(now=DIGEST_TIME) == {}  # already handed to the workers
    summary = digests_send([reader.pk], now=DIGEST_TIME)

    assert summary == {"sent": 4}
    subjects = sorted(m["Subject"] for m in smtp_peer.messages)
    assert subjects == ["Your daily digest: Administrative (1)", "Your daily digest: Course announcement (3)"]
    announcements = next(m for m in smtp_peer.messages if "announcement" in m["Subject"])
    text = announcements.get_body(("plain",)).get_content()
    assert text.index("Club fair") < text.index("Library hours") < text.index("Choir auditions")
    assert "Hello Dana" in text
    assert announcements.get_body(("html",)) is not None
    held = email_deliveries(reader)
    assert {d.status for d in held} == {"sent"}
    assert len({d.provider_message_id for d in held}) == 2  # one email per category
    assert digests_send([reader.pk], now=DIGEST_TIME + dt.timedelta(minutes=1)) == {}


def test_it_sends_the_digest_in_french_to_a_french_speaker(db, smtp_peer, broker):
    user = make_user("s3", language="fr", timezone="Europe/Paris", digest_hour=18)
    preferences_save(user, digests={"announcement": True})
    post(user, "Forum des clubs", at=MORNING)

    digests_send([user.pk], now=DIGEST_TIME)

    [message] = smtp_peer.messages
    assert str(message["Subject"]).strip() == "Votre résumé du jour : Annonces de cours (1)"
    assert "Forum des clubs" in message.get_body(("plain",)).get_content()


def test_it_retries_all_gathered_deliveries_together_when_the_mail_server_is_down(reader, settings, broker):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens there
    post(reader, "Club fair", at=MORNING)
    post(reader, "Library hours", at=MORNING)

    summary = digests_send([reader.pk], now=DIGEST_TIME)

    assert summary == {"retrying": 2}
    held = list(email_deliveries(reader))
    assert {(d.status, d.digest, d.attempts) for d in held} == {("retrying", True, 1)}
    assert all(d.next_attempt_at > DIGEST_TIME for d in held)
    assert "cannot connect" in held[0].last_error


def test_it_refuses_the_digest_notifier_to_senders(reader):
    from django.core.exceptions import ValidationError

    from channels_app.registry import notifier_choices

    with pytest.raises(ValidationError, match="made by FlashNotify"):
        notification_send(sender=None, notifier="digest", category="announcement", title="t", body="b",
                          audience={"users": [reader.username]})
    assert "digest" not in dict(notifier_choices())
