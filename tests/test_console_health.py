"""Health pages: breaker state and reset, error rates and latency charts, and a test send to oneself."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from channels_app.breaker import CircuitBreaker
from channels_app.models import PerformanceMetric


@pytest.fixture
def open_email_breaker(settings):
    breaker = CircuitBreaker("email")
    for _ in range(settings.BREAKER_FAILURE_THRESHOLD):
        breaker.record_failure()
    yield breaker
    breaker.reset()


@pytest.mark.django_db
def test_it_shows_each_channels_breaker_on_the_index(client, staff_user, open_email_breaker):
    client.force_login(staff_user)

    response = client.get("/admin/health/")

    rows = {row["channel"]: row for row in response.context["rows"]}
    assert rows["email"]["breaker"]["state"] == "open"
    assert rows["sms"]["breaker"]["state"] == "closed"
    assert rows["inbox"]["breaker"] is None


@pytest.mark.django_db
def test_it_lets_an_admin_reset_an_open_breaker_and_records_it(client, admin_user, open_email_breaker):
    client.force_login(admin_user)
    page = client.get("/admin/health/email/")
    assert page.context["breaker"]["state"] == "open"
    assert b'value="reset"' in page.content

    response = client.post("/admin/health/email/", {"action": "reset"}, follow=True)

    assert open_email_breaker.state == "closed"
    assert "closed again" in response.content.decode()
    assert LogEntry.objects.filter(change_message="Reset the email circuit breaker.", user=admin_user).exists()


@pytest.mark.django_db
def test_it_refuses_a_breaker_reset_to_staff(client, staff_user, open_email_breaker):
    client.force_login(staff_user)
    refused = client.post("/admin/health/email/", {"action": "reset"})

    assert refused.status_code == 403
    assert "Access denied" in refused.content.decode() and "Back to the console home" in refused.content.decode()
    assert open_email_breaker.state == "open"


@pytest.mark.django_db
def test_it_draws_error_rate_and_latency_charts_from_the_metrics(client, staff_user):
    now = timezone.now()
    PerformanceMetric.objects.bulk_create([
        PerformanceMetric(notifier="academic", channel="sms", operation="send", items=10, succeeded=9, failed=1,
                          duration_ms=500, recorded_at=now - timedelta(hours=2, minutes=30)),
        PerformanceMetric(notifier="academic", channel="sms", operation="send", items=10, succeeded=10, failed=0,
                          duration_ms=100, recorded_at=now - timedelta(hours=1, minutes=30)),
        PerformanceMetric(notifier="academic", channel="email", operation="send", items=5, succeeded=0, failed=5,
                          duration_ms=5, recorded_at=now - timedelta(hours=1)),
    ])
    client.force_login(staff_user)

    response = client.get("/admin/health/sms/")

    totals = response.context["totals"]
    assert totals["items"] == 20 and totals["failed"] == 1
    assert totals["p50"] == 10.0 and totals["p95"] == 50.0
    html = response.content.decode()
    assert html.count('class="fn-chart"') == 2 and html.count("<polyline") == 3  # error rate, p50, p95
    assert "error rate" in html and "p95 ms" in html
    assert "cdn" not in html.lower()
    assert client.get("/admin/health/fax/").status_code == 404


@pytest.mark.django_db
def test_it_sends_a_test_message_to_the_staff_member_and_shows_the_answer(client, staff_user, smtp_peer):
    client.force_login(staff_user)

    response = client.post("/admin/health/email/", {"action": "test"}, follow=True)

    assert [m["To"] for m in smtp_peer.messages] == [staff_user.email]
    assert smtp_peer.messages[0]["Subject"] == "FlashNotify test message"
    assert "Test message to teacher@example.edu accepted by the email provider: &lt;test-" in response.content.decode()
    assert LogEntry.objects.filter(
        change_message__startswith="Sent a test message on email to teacher@example.edu: accepted").exists()
    assert PerformanceMetric.objects.filter(channel="email", operation="send", succeeded=1).exists()


@pytest.mark.django_db
def test_it_shows_the_providers_refusal_of_a_test_message(client, staff_user, smtp_peer):
    smtp_peer.refuse.add(staff_user.email)
    client.force_login(staff_user)

    response = client.post("/admin/health/email/", {"action": "test"}, follow=True)

    assert "did not accept the test message to teacher@example.edu: SMTP 550" in response.content.decode()
    assert smtp_peer.messages == []


@pytest.mark.django_db
def test_it_says_why_no_test_is_sent_without_an_address(client, staff_user):
    client.force_login(staff_user)
    page = client.get("/admin/health/sms/").content.decode()
    assert "No test can be sent: your account has no mobile phone number." in page
    assert 'value="test"' not in page  # no button that could only fail

    response = client.post("/admin/health/sms/", {"action": "test"}, follow=True)
    assert "No test sent: your account has no mobile phone number." in response.content.decode()
