"""The circuit breaker per provider: its state is shared by every worker process."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Delivery
from notifications.engine import notification_fan_out
from notifications.services import notification_send

from .delivery_helpers import closed_breakers, students  # noqa: F401
from .peers import BASE_DIR, worker_environment


class WorkerProcess:
    """A separate Python process running one engine step, with the test's database and cache."""

    def __init__(self, name, **env):
        self.name = name
        self.env = worker_environment(**env)
        self.logs = []

    def run(self, *args):
        done = subprocess.run([sys.executable, "-m", "tests.engine_probe", *map(str, args)], env=self.env,
                              cwd=BASE_DIR, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        self.logs.append(done.stderr)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def send(self, delivery, now):
        return self.run("send", delivery.pk, now.isoformat())

    def breaker(self, now):
        return self.run("breaker", "email", now.isoformat())["state"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closed_breakers")
def test_it_opens_refuses_half_opens_and_closes_with_its_state_shared_by_two_workers(smtp_peer, admin_user):
    env = dict(EMAIL_HOST="127.0.0.1", EMAIL_PORT=smtp_peer.port, BREAKER_FAILURE_THRESHOLD=2,
               BREAKER_RESET_SECONDS=60, LOG_LEVEL="WARNING")
    first, second = WorkerProcess("first", **env), WorkerProcess("second", **env)
    users = students("s6000", 4)
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Lab closed", body="Today.", channels=["email"],
                                        audience={"users": [u.username for u in users]})
    notification_fan_out(notification.pk)
    d1, d2, d3, d4 = Delivery.objects.filter(notification=notification).order_by("pk")
    smtp_peer.fail_next = 100  # the provider is down: 451 to every message
    t0 = timezone.now()

    # Two failed batches, one in each worker, open the breaker.
    first.send(d1, t0)
    assert first.breaker(t0) == "closed"
    second.send(d2, t0 + timedelta(seconds=1))
    assert "circuit breaker email: closed -> open" in second.logs[-1]
    assert first.breaker(t0 + timedelta(seconds=2)) == "open"

    # While open, the other worker does not even connect, and the refusal is not an attempt.
    connections = smtp_peer.connections
    assert first.send(d3, t0 + timedelta(seconds=2)) == {"retrying": 1}
    assert smtp_peer.connections == connections
    d3.refresh_from_db()
    assert (d3.status, d3.attempts) == ("retrying", 0)
    assert "circuit breaker open for email" in d3.last_error
    assert d3.next_attempt_at == t0 + timedelta(seconds=61)

    # The provider comes back; after the reset delay one trial half-opens the breaker and closes it.
    smtp_peer.fail_next = 0
    later = t0 + timedelta(seconds=62)
    assert second.breaker(later) == "half_open"
    assert first.send(d3, later) == {"sent": 1}
    assert "circuit breaker email: open -> half_open" in first.logs[-1]
    assert "circuit breaker email: half_open -> closed" in first.logs[-1]
    assert second.breaker(later) == "closed"
    assert second.send(d4, later) == {"sent": 1}
    assert sorted(m["To"] for m in smtp_peer.messages) == sorted([d3.recipient.email, d4.recipient.email])


@pytest.mark.django_db
@pytest.mark.usefixtures("closed_breakers")
def test_it_reopens_when_the_half_open_trial_fails(smtp_peer, admin_user, settings):
    from channels_app.breaker import CircuitBreaker
    from notifications.engine import deliveries_send

    settings.BREAKER_FAILURE_THRESHOLD, settings.BREAKER_RESET_SECONDS = 1, 30
    users = students("s6100", 2)
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Lab closed", body="Today.", channels=["email"],
                                        audience={"users": [u.username for u in users]})
    notification_fan_out(notification.pk)
    d1, d2 = Delivery.objects.filter(notification=notification).order_by("pk")
    smtp_peer.fail_next = 100
    t0 = timezone.now()
    deliveries_send([d1.pk], now=t0)
    breaker = CircuitBreaker("email", clock=(t0 + timedelta(seconds=31)).timestamp)
    assert breaker.state == "half_open"

    deliveries_send([d2.pk], now=t0 + timedelta(seconds=31))

    assert CircuitBreaker("email", clock=(t0 + timedelta(seconds=32)).timestamp).state == "open"
    assert CircuitBreaker("email", clock=(t0 + timedelta(seconds=62)).timestamp).state == "half_open"
