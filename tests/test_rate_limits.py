"""A maximum rate per provider, honoured by every worker together; the wait is a `retrying`, never a failure."""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from prometheus_client import REGISTRY
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from channels_app.ratelimit import RateLimiter
from notifications.engine import deliveries_send, notification_fan_out
from notifications.models import Delivery
from notifications.services import notification_send

from .delivery_helpers import closed_breakers, students  # noqa: F401
from .peers import BASE_DIR, worker_environment

WAITING = "waiting for the email provider's rate limit"


def email_to(admin_user, users, title="Lab closed"):
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title=title, body="Today.", channels=["email"],
                                        audience={"users": [u.username for u in users]})
    return notification


def planned(notification, now):
    notification_fan_out(notification.pk, now=now)
    return list(Delivery.objects.filter(notification=notification).order_by("pk"))


def send_in_another_process(deliveries, now, **env):
    """One engine step in a worker process of its own (tests/engine_probe.py), sharing the test's cache."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine_probe", "send", ",".join(str(d.pk) for d in deliveries), now.isoformat()],
        env=worker_environment(**env), cwd=BASE_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.django_db
@pytest.mark.usefixtures("closed_breakers")
def test_it_sends_up_to_the_rate_and_defers_the_rest_with_the_reason_then_sends_them(smtp_peer, admin_user,
                                                                                     settings):
    settings.EMAIL_RATE_LIMIT = "3"
    users = students("s7000", 5)
    t0 = timezone.now()
    deliveries = planned(email_to(admin_user, users), t0)
    waits = {"channel": "email", "provider": "email", "reason": "rate_limit"}
    waited = REGISTRY.get_sample_value("flashnotify_provider_waits_total", waits) or 0

    assert deliveries_send([d.pk for d in deliveries], now=t0) == {"sent": 3, "retrying": 2}

    assert len(smtp_peer.messages) == 3
    waiting = Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status="retrying").order_by("next_attempt_at")
    assert len(waiting) == 2
    for delivery in waiting:
        assert delivery.last_error == f"{WAITING} (3 per second)"
        assert delivery.attempts == 0  # the wait is not an attempt
        assert t0 < delivery.next_attempt_at <= t0 + timedelta(seconds=1)
    # Each deferred message is given its own turn, one interval (1/3 s) after the one before.
    first, second = waiting
    assert REGISTRY.get_sample_value("flashnotify_provider_waits_total", waits) - waited == 2
    assert abs(second.next_attempt_at - first.next_attempt_at - timedelta(seconds=1 / 3)) <= timedelta(microseconds=1)

    # Their turn comes: they are sent, each once, and the reason is gone.
    later = t0 + timedelta(seconds=2)
    assert deliveries_send([d.pk for d in waiting], now=later) == {"sent": 2}
    assert sorted(m["To"] for m in smtp_peer.messages) == sorted(u.email for u in users)
    assert set(Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).values_list("status", "attempts",
                                                                                        "last_error")) == {
        ("sent", 1, "")}


@pytest.mark.django_db
@pytest.mark.usefixtures("closed_breakers")
def test_it_never_spends_a_delivery_s_attempts_on_waiting(smtp_peer, admin_user, settings):
    settings.EMAIL_RATE_LIMIT = "1"
    settings.DELIVERY_MAX_ATTEMPTS = 1  # one counted wait would fail the message for good
    users = students("s7100", 4)
    t0 = timezone.now()
    ids = [d.pk for d in planned(email_to(admin_user, users[:3]), t0)]
    other = [d.pk for d in planned(email_to(admin_user, users[3:], title="Other"), t0)]

    assert deliveries_send(ids, now=t0) == {"sent": 1, "retrying": 2}
    # When the first one's turn comes, another notification's message has just taken the budget: it waits again.
    assert deliveries_send(other, now=t0 + timedelta(seconds=1.5)) == {"sent": 1}
    assert deliveries_send(ids, now=t0 + timedelta(seconds=1.5)) == {"retrying": 1}
    assert set(Delivery.objects.filter(pk__in=ids, status="retrying").values_list("attempts", flat=True)) == {0}

    assert deliveries_send(ids, now=t0 + timedelta(seconds=3)) == {"sent": 1, "retrying": 1}
    assert deliveries_send(ids, now=t0 + timedelta(seconds=4.5)) == {"sent": 1}
    assert Delivery.objects.filter(pk__in=ids + other, status="sent", attempts=1).count() == 4
    assert len(smtp_peer.messages) == 4


@pytest.mark.django_db
@pytest.mark.usefixtures("closed_breakers")
def test_one_provider_s_limit_holds_back_neither_other_channels_nor_messages_it_does_not_send(
        smtp_peer, admin_user, settings):
    settings.EMAIL_RATE_LIMIT = "2"
    users = students("s7200", 4)
    t0 = timezone.now()
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Lab closed", body="Today.", channels=["email", "inbox"],
                                        audience={"users": [u.username for u in users]})
    deliveries = planned(notification, t0)

    assert deliveries_send([d.pk for d in deliveries], now=t0) == {"sent": 6, "retrying": 2}

    statuses = set(Delivery.objects.filter(notification=notification).values_list("channel", "status"))
    assert statuses == {("inbox", "sent"), ("email", "sent"), ("email", "retrying")}
    assert len(smtp_peer.messages) == 2


@pytest.mark.django_db
def test_the_limiter_grants_its_rate_with_a_burst_of_one_second_and_says_when_the_rest_may_go():
    clock = [1_000_000.0]
    limiter = RateLimiter("sms", 10, clock=lambda: clock[0])

    assert limiter.reserve(25) == (10, pytest.approx([0.1 * i for i in range(1, 16)]))
    # The next ones are told turns after those already told: they will not all come back at once.
    assert limiter.reserve(5) == (0, pytest.approx([1.5 + 0.1 * i for i in range(1, 6)]))
    clock[0] += 0.35  # three and a half intervals later: three more messages fit
    granted, waits = limiter.reserve(5)
    assert granted == 3 and waits == pytest.approx([1.75, 1.85])
    # Over any run of seconds, no more than the rate and the one-second burst.
    sent = 13
    for _ in range(100):
        clock[0] += 0.25
        sent += limiter.reserve(50)[0]
    assert sent == 10 + int((clock[0] - 1_000_000.0) * 10)
    assert limiter.snapshot()["next_free_in"] > 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closed_breakers")
def test_two_workers_share_one_budget(smtp_peer, admin_user):
    env = dict(EMAIL_HOST="127.0.0.1", EMAIL_PORT=smtp_peer.port, EMAIL_RATE_LIMIT="4", LOG_LEVEL="WARNING")
    users = students("s7300", 8)
    t0 = timezone.now()
    deliveries = planned(email_to(admin_user, users), t0)

    # Both workers send at the same moment: four messages between them, the rest wait their turn.
    send_in_another_process(deliveries[:4], t0, **env)
    send_in_another_process(deliveries[4:], t0, **env)

    assert len(smtp_peer.messages) == 4
    waiting = Delivery.objects.filter(notification=deliveries[0].notification, status="retrying")
    assert waiting.count() == 4
    assert {(d.attempts, d.last_error) for d in waiting} == {(0, f"{WAITING} (4 per second)")}
    # Each waits for a turn of its own: none is told to go before the budget has room for it.
    turns = sorted(d.next_attempt_at for d in waiting)
    assert turns == [t0 + timedelta(seconds=0.25 * n) for n in range(1, 5)]

    # A second later, either worker sends them.
    send_in_another_process(list(waiting), t0 + timedelta(seconds=1.5), **env)
    assert sorted(m["To"] for m in smtp_peer.messages) == sorted(u.email for u in users)


@pytest.mark.parametrize("value", ["fast", "-5", "nan", "inf"])
def test_a_rate_that_is_not_a_number_of_messages_per_second_stops_the_start(value, settings):
    settings.SMS_RATE_LIMIT = value

    with pytest.raises(SystemCheckError, match="flashnotify.E030"):
        call_command("check")


@pytest.mark.parametrize("value", ["", "0", "0.5", "100"])
def test_a_rate_in_messages_per_second_or_none_is_accepted(value, settings):
    settings.PUSH_RATE_LIMIT = value

    assert not [m for m in run_checks() if m.id == "flashnotify.E030"]


@pytest.mark.django_db
def test_a_phone_code_counts_against_the_sms_rate_and_waits_for_it_like_any_message(http_peer, settings, student):
    from accounts.phone import phone_verification_start
    from django.core.exceptions import ValidationError

    peer = http_peer(lambda request: (201, {}, {"sid": "SM" + "1" * 32, "status": "queued"}))
    settings.TWILIO_API_BASE, settings.TWILIO_FROM_NUMBER = peer.url, "+15005550006"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "0" * 32, "test-token"
    settings.SMS_RATE_LIMIT = "0.001"  # one message, then nothing for 1,000 s
    RateLimiter("sms", 0.001).reserve(1)  # an alert has just taken the budget

    with pytest.raises(ValidationError, match="Try again in a few minutes"):
        phone_verification_start(user=student, phone="+33612345678")

    assert peer.requests == []  # the provider's rate is kept: nothing was posted
    settings.SMS_RATE_LIMIT = ""
    phone_verification_start(user=student, phone="+33612345678")
    assert len(peer.requests) == 1
