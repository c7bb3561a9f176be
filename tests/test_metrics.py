"""/metrics for Prometheus: refused unless configured and passed, and real figures after real deliveries."""

import subprocess
import sys

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from channels_app.breaker import CircuitBreaker
from notifications.models import Delivery, Notification
from notifications.services import notification_send

from .conftest import make_user
from .delivery_helpers import closed_breakers, fan_out_and_send, students  # noqa: F401
from .peers import BASE_DIR, wait_until

TOKEN = "metrics-token-0123456789-abcdefghij"


def scrape(**headers):
    return Client().get("/metrics", **headers)


def figures(response):
    """{(sample name, frozenset of labels): value} of an exposition."""
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def authorised():
    return figures(scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    settings.PROMETHEUS_MULTIPROC_DIR = None


def send(sender, users, channels=("email",)):
    notification, _ = notification_send(sender=sender, notifier="academic", category="announcement",
                                        title="Lab closed", body="Today.", channels=list(channels),
                                        audience={"users": [u.username for u in users]})
    return notification


@pytest.mark.django_db
def test_it_does_not_exist_when_neither_a_token_nor_a_network_is_set(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []

    assert scrape().status_code == 404
    assert scrape(HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 404


@pytest.mark.django_db
def test_it_asks_for_the_bearer_token(metrics_token):
    refused = scrape()
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert scrape(HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert b"flashnotify" not in refused.content

    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.django_db
def test_it_answers_only_the_allowed_networks(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", ["10.0.0.0/8", "192.0.2.7"]

    assert scrape(REMOTE_ADDR="10.20.30.40").status_code == 200
    assert scrape(REMOTE_ADDR="192.0.2.7").status_code == 200
    assert scrape(REMOTE_ADDR="192.0.2.8").status_code == 403
    assert scrape(REMOTE_ADDR="10.20.30.40", HTTP_X_FORWARDED_FOR="192.0.2.8").status_code == 200  # no proxy trusted
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1").status_code == 200
    assert scrape(REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403


@pytest.mark.django_db
def test_it_needs_both_the_network_and_the_token_when_both_are_set(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, ["10.0.0.0/8"]

    assert scrape(REMOTE_ADDR="10.0.0.1").status_code == 401
    assert scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 403
    assert scrape(REMOTE_ADDR="10.0.0.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("closed_breakers", "metrics_token")
def test_it_reports_real_deliveries_latency_fan_out_lag_and_breakers(smtp_peer, admin_user):
    users = students("s7100", 3)
    before = authorised()

    notification = send(admin_user, users, channels=("email", "inbox"))
    fan_out_and_send(notification)

    assert len(smtp_peer.messages) == 3
    assert Notification.objects.get(pk=notification.pk).status == Notification.Status.SENT
    after = authorised()
    assert value(after, "flashnotify_deliveries", channel="email", status="sent") == 3
    assert value(after, "flashnotify_deliveries", channel="inbox", status="sent") == 3
    assert value(after, "flashnotify_deliveries", channel="sms", status="failed") == 0
    for channel in ("email", "inbox"):
        count = "flashnotify_provider_send_seconds_count"
        assert value(after, count, channel=channel, provider=channel) - value(
            before, count, channel=channel, provider=channel) == 3
    assert value(after, "flashnotify_provider_send_seconds_sum", channel="email", provider="email") > 0
    for lag in ("flashnotify_fanout_first_handoff_seconds", "flashnotify_fanout_last_handoff_seconds"):
        assert value(after, lag + "_count") - value(before, lag + "_count") == 1
    assert value(after, "flashnotify_circuit_breaker_state", provider="email", state="closed") == 1
    assert value(after, "flashnotify_circuit_breaker_state", provider="email", state="open") == 0
    assert ("flashnotify_queue_depth", frozenset()) in after
    for source in ("database", "broker", "cache", "workers"):
        assert value(after, "flashnotify_state_source_up", source=source) == 1
    assert value(after, "flashnotify_worker_clusters") == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("closed_breakers", "metrics_token")
def test_it_counts_the_sends_an_open_breaker_defers(smtp_peer, admin_user, settings):
    settings.BREAKER_FAILURE_THRESHOLD, settings.BREAKER_RESET_SECONDS = 1, 60
    CircuitBreaker("email").record_failure()
    users = students("s7200", 2)
    before = authorised()

    fan_out_and_send(send(admin_user, users))

    after = authorised()
    assert smtp_peer.messages == []
    assert value(after, "flashnotify_deliveries", channel="email", status="retrying") == 2
    waits = dict(channel="email", provider="email", reason="breaker_open")
    assert value(after, "flashnotify_provider_waits_total", **waits) - value(
        before, "flashnotify_provider_waits_total", **waits) == 2
    waited = value(after, "flashnotify_provider_wait_seconds_total", **waits) - value(
        before, "flashnotify_provider_wait_seconds_total", **waits)
    assert 100 < waited <= 120  # two messages, each told to wait out the breaker's 60 s
    assert value(after, "flashnotify_circuit_breaker_state", provider="email", state="open") == 1
    assert value(after, "flashnotify_circuit_breaker_failures", provider="email") == 1
    assert value(after, "flashnotify_provider_send_seconds_count", channel="email", provider="email") == value(
        before, "flashnotify_provider_send_seconds_count", channel="email", provider="email")


INCREMENT = """
import sys
from channels_app.metrics import PROVIDER_SEND_SECONDS, PROVIDER_WAITS
PROVIDER_WAITS.labels("sms", "sms", "retry_after").inc(int(sys.argv[1]))
PROVIDER_SEND_SECONDS.labels("sms", "sms").observe(0.2)
"""


@pytest.mark.django_db
@pytest.mark.usefixtures("metrics_token")
def test_it_adds_up_what_several_processes_counted_in_multiprocess_mode(tmp_path, settings):
    for amount in (2, 3):
        subprocess.run([sys.executable, "-c", INCREMENT, str(amount)], cwd=BASE_DIR, check=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one file per process and kind

    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    samples = authorised()

    assert value(samples, "flashnotify_provider_waits_total", channel="sms", provider="sms", reason="retry_after") == 5
    assert value(samples, "flashnotify_provider_send_seconds_count", channel="sms", provider="sms") == 2
    assert value(samples, "flashnotify_provider_send_seconds_bucket", channel="sms", provider="sms", le="0.25") == 2
    assert value(samples, "flashnotify_deliveries", channel="email", status="sent") == 0  # the state gauges too


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closed_breakers", "metrics_token")
def test_it_scrapes_what_a_real_worker_cluster_sent_in_multiprocess_mode(tmp_path, settings, smtp_peer, workers,
                                                                          admin_user):
    users = [make_user(f"s730000{n}") for n in range(3)]
    workers(PROMETHEUS_MULTIPROC_DIR=tmp_path)

    notification = send(admin_user, users)
    wait_until(lambda: Notification.objects.get(pk=notification.pk).status == Notification.Status.SENT,
               timeout=60, message="the notification sent")

    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    samples = authorised()
    assert Delivery.objects.filter(notification=notification, status="sent").count() == 3
    assert value(samples, "flashnotify_deliveries", channel="email", status="sent") == 3
    assert value(samples, "flashnotify_provider_send_seconds_count", channel="email", provider="email") == 3
    assert value(samples, "flashnotify_fanout_first_handoff_seconds_count") == 1
    assert value(samples, "flashnotify_fanout_last_handoff_seconds_count") == 1
    # A cluster of an earlier test may still be listed for the 3 s its last status lives.
    def alone():
        scraped = authorised()
        return scraped if value(scraped, "flashnotify_worker_clusters") == 1 else None

    samples = wait_until(alone, timeout=10, message="this test's cluster alone")
    assert 0 <= value(samples, "flashnotify_worker_heartbeat_age_seconds") < 5
