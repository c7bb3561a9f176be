"""The engine's batched writes of provider ids, and the provider HTTP session that reads its environment once."""

import pytest
import requests

from channels_app.sessions import ProviderSession
from notifications.engine.delivery import provider_ids_write
from notifications.models import Delivery, Notification

pytestmark = pytest.mark.django_db


def test_provider_ids_written_row_by_row_and_shared(django_user_model):
    users = django_user_model.objects.bulk_create(
        [django_user_model(username=f"s{n:04d}", email=f"s{n}@example.edu") for n in range(7)])
    notification = Notification.objects.create(notifier="academic", category="announcement", title="t", body="b",
                                               status="sending")
    deliveries = Delivery.objects.bulk_create([Delivery(notification=notification, recipient=user, channel="sms")
                                               for user in users])
    pairs = [(d.pk, f"SM{n:032d}") for n, d in enumerate(deliveries[:5])]
    pairs += [(d.pk, "1 browser(s)") for d in deliveries[5:]]
    provider_ids_write(pairs, batch_size=2)  # three batches of the five distinct ids, one UPDATE of the shared one
    written = dict(Delivery.objects.filter(notification=notification).values_list("pk", "provider_message_id"))
    assert written == dict(pairs)


def test_provider_ids_write_nothing():
    provider_ids_write([])


def test_provider_session_reads_the_environment_once_per_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.edu:3128")
    monkeypatch.setenv("NO_PROXY", "push.example.org")
    calls = []
    real = requests.sessions.get_environ_proxies
    monkeypatch.setattr(requests.sessions, "get_environ_proxies",
                        lambda url, no_proxy=None: calls.append(url) or real(url, no_proxy=no_proxy))
    session = ProviderSession()
    first = session.merge_environment_settings("https://api.example.com/a", {}, None, None, None)
    again = session.merge_environment_settings("https://api.example.com/b", {}, None, None, None)
    bypassed = session.merge_environment_settings("https://push.example.org/x", {}, None, None, None)
    assert first["proxies"]["https"] == again["proxies"]["https"] == "http://proxy.example.edu:3128"
    assert "https" not in bypassed["proxies"]  # no_proxy is honoured, per host
    assert calls == ["https://api.example.com/a", "https://push.example.org/x"]
    first["proxies"]["https"] = "changed by a caller"
    assert session.merge_environment_settings("https://api.example.com/c", {}, None, None, None)["proxies"][
        "https"] == "http://proxy.example.edu:3128"
    # A request with settings of its own is merged as requests merges it.
    own = session.merge_environment_settings("https://api.example.com/d", {}, None, False, None)
    assert own["verify"] is False
