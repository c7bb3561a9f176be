"""The console's home: what is sending, what was sent, what needs action, the channels; and what Staff do not see."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_create
from channels_app.models import PerformanceMetric
from notifications.models import Notification

from .console_helpers import sent_notification, two_cohorts


@pytest.mark.django_db
def test_it_hides_the_system_tables_from_staff_and_groups_them_for_admin(client, staff_user, admin_user):
    client.force_login(staff_user)
    staff_home = client.get("/admin/").content.decode()

    assert "Compose a notification" in staff_home and 'id="system"' not in staff_home
    for internal in ("/admin/django_q/", "/admin/token_blacklist/", "/admin/channels_app/", "/admin/auth/group/"):
        assert internal not in staff_home
    # nor in the side navigation of the other pages
    assert "/admin/channels_app/performancemetric/" not in client.get("/admin/notifications/notification/").content.decode()

    client.force_login(admin_user)
    admin_home = client.get("/admin/").content.decode()
    system = admin_home[admin_home.index('id="system"'):]
    for internal in ("/admin/django_q/", "/admin/token_blacklist/", "/admin/channels_app/performancemetric/",
                     "/admin/auth/group/"):
        assert internal in system
    records = admin_home[:admin_home.index('id="system"')]
    assert "/admin/notifications/notification/" in records and "/admin/django_q/" not in records


@pytest.mark.django_db
def test_it_shows_the_sends_running_now_with_their_progress_and_only_ones_own(client, staff_user):
    mine, theirs, other_staff = two_cohorts(staff_user)
    running = sent_notification(mine, staff_user, title="Room change", statuses=("sent", "queued"))
    sent_notification(theirs, other_staff, title="Not yours")
    client.force_login(staff_user)

    home = client.get("/admin/")

    assert [row["notification"].pk for row in home.context["running"]] == [running.pk]
    assert home.context["running"][0]["progress"]["done"] == 1
    html = home.content.decode()
    assert "1 of 2 deliveries done" in html and "Not yours" not in html
    assert client.get("/admin/running.json").json()["running"] == [
        {"id": running.pk, "total": 2, "done": 1, "pending": 1, "fanned_out": False, "percent": 50,
         "status": "sending", "final": False}]


@pytest.mark.django_db
def test_it_lists_the_last_sends_with_their_reach(client, staff_user):
    mine, _, _ = two_cohorts(staff_user)
    done = sent_notification(mine, staff_user, title="Exam room", statuses=("delivered", "failed"))
    Notification.objects.filter(pk=done.pk).update(status=Notification.Status.PARTIALLY_FAILED)
    client.force_login(staff_user)

    home = client.get("/admin/")

    [recent] = home.context["recent"]
    assert recent.pk == done.pk and recent.reached == 1
    assert "1 of 2 reached" in home.content.decode()


@pytest.mark.django_db
def test_it_says_what_needs_action_failures_and_alerts_unacknowledged_past_their_escalation(client, staff_user):
    mine, _, _ = two_cohorts(staff_user)
    failed = sent_notification(mine, staff_user, title="Timetable", statuses=("failed", "failed"))
    Notification.objects.filter(pk=failed.pk).update(status=Notification.Status.FAILED)
    # Academic alerts escalate after 4 hours (AcademicNotifier.escalation_delay).
    overdue = sent_notification(mine, staff_user, title="Fire drill", requires_ack=True,
                                started_at=timezone.now() - timedelta(hours=5))
    sent_notification(mine, staff_user, title="Just sent", requires_ack=True, started_at=timezone.now())
    client.force_login(staff_user)

    home = client.get("/admin/")

    needs = home.context["needs_action"]
    assert [(n.pk, n.failed_count) for n in needs["failed"]] == [(failed.pk, 2)]
    assert [(row["notification"].pk, row["waiting"]) for row in needs["unacknowledged"]] == [(overdue.pk, 2)]
    html = home.content.decode()
    assert "2 failed deliveries" in html and "2 of 2 have not acknowledged" in html
    assert "Just sent" not in html[html.index('id="needs-action"'):html.index('id="recent"')]


@pytest.mark.django_db
def test_it_says_a_channel_is_not_configured_and_which_settings_to_set(client, staff_user, settings):
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_MESSAGING_SERVICE_SID = settings.TWILIO_FROM_NUMBER = ""
    PerformanceMetric.objects.create(notifier="academic", channel="sms", operation="send", items=3, succeeded=0,
                                     failed=3, duration_ms=1, recorded_at=timezone.now())
    client.force_login(staff_user)
    expected = "Not configured — set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER"

    for url in ("/admin/", "/admin/health/", "/admin/health/sms/"):
        html = client.get(url).content.decode()
        row = html[html.index('channel-sms' if url == "/admin/" else 'health-sms' if url == "/admin/health/"
                              else 'id="configuration"'):]
        assert row.index(expected) < 400, url
    sms_row = client.get("/admin/health/").content.decode().split("health-sms")[1].split("</tr>")[0]
    assert "circuit breaker closed" not in sms_row

    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM_NUMBER = "AC1", "t", "+15550001"
    html = client.get("/admin/health/").content.decode().split("health-sms")[1].split("</tr>")[0]
    assert "Working: circuit breaker closed" in html and "Not configured" not in html


@pytest.mark.django_db
def test_it_draws_a_lone_point_as_a_labelled_bar(client, staff_user):
    PerformanceMetric.objects.create(notifier="academic", channel="email", operation="send", items=4, succeeded=3,
                                     failed=1, duration_ms=40, recorded_at=timezone.now() - timedelta(minutes=5))
    client.force_login(staff_user)

    html = client.get("/admin/health/email/").content.decode()

    error_chart = html[html.index('id="error-chart"'):html.index('id="latency-chart"')]
    assert "<circle" not in html and 'class="fn-bar"' in error_chart and ">25%</text>" in error_chart
    assert "No message in the last 24 hours." in client.get("/admin/health/push/").content.decode()


@pytest.mark.django_db
def test_it_names_the_address_of_the_test_send(client, staff_user):
    staff_user.phone = "+33612345678"
    staff_user.save(update_fields=["phone"])
    client.force_login(staff_user)

    assert "Send a test to +33612345678" in client.get("/admin/health/sms/").content.decode()
    assert "Send a test to teacher@example.edu" in client.get("/admin/health/email/").content.decode()


@pytest.mark.django_db
def test_it_revokes_an_api_key_from_its_page_and_records_it_in_the_history(client, admin_user, staff_user):
    key, raw = api_key_create(user=staff_user, name="LMS", scopes=["send"])
    client.force_login(admin_user)
    page = client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert "Revoke this key" in page and 'name="revoked_at' not in page

    response = client.post(f"/admin/accounts/apikey/{key.pk}/revoke/", follow=True)

    key.refresh_from_db()
    assert key.revoked_at is not None and not ApiKey.objects.usable().filter(pk=key.pk).exists()
    assert "is revoked" in response.content.decode() and "Revoke this key" not in response.content.decode()
    entry = LogEntry.objects.get(object_id=str(key.pk))
    assert entry.user == admin_user and entry.get_change_message() == "Revoked: the key is refused from now on."
    assert client.get(f"/admin/accounts/apikey/{key.pk}/revoke/").status_code == 403  # POST only


@pytest.mark.django_db
def test_it_records_the_revoke_action_of_the_list_in_the_history(client, admin_user, staff_user):
    keys = [api_key_create(user=staff_user, name=name, scopes=["send"])[0] for name in ("A", "B")]
    client.force_login(admin_user)

    response = client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [k.pk for k in keys]},
                           follow=True)

    assert "2 API keys revoked." in response.content.decode()
    assert LogEntry.objects.filter(object_id__in=[str(k.pk) for k in keys]).count() == 2


@pytest.mark.django_db
def test_the_api_key_form_chooses_the_owner_by_username_and_the_scopes_by_name(client, admin_user):
    client.force_login(admin_user)

    html = client.get("/admin/accounts/apikey/add/").content.decode()

    assert 'class="admin-autocomplete' in html and 'data-field-name="user"' in html
    assert html.count('type="checkbox" name="scopes"') == len(ApiKey.Scope.values)
    assert "revoked_at" not in html
    found = client.get("/admin/autocomplete/", {"app_label": "accounts", "model_name": "apikey",
                                                "field_name": "user", "term": "a3000"}).json()
    assert [r["text"] for r in found["results"]] == ["a3000001"]


@pytest.mark.django_db
def test_staff_get_the_consoles_own_403_page_with_a_way_back(client, staff_user):
    client.force_login(staff_user)

    response = client.get("/admin/accounts/user/import-roster/")

    html = response.content.decode()
    assert response.status_code == 403
    assert "your role is Staff" in html and 'href="/admin/"' in html and "Back to the console home" in html
    assert "admin/css/base" in html  # the console's look, not the student pages'


def test_the_favicon_is_served_and_linked(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])[:4] == b"\0\0\1\0"
    assert 'rel="icon" href="/favicon.ico"' in client.get("/admin/login/").content.decode()


@pytest.mark.django_db
def test_the_last_sends_cost_the_same_queries_for_two_sends_as_for_twenty(client, staff_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    mine, _, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    def queries_for_home():
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/admin/").status_code == 200
        return len(queries)

    for n in range(2):
        Notification.objects.filter(pk=sent_notification(mine, staff_user, title=f"Sent {n}").pk).update(status="sent")
    few = queries_for_home()
    for n in range(2, 20):
        Notification.objects.filter(pk=sent_notification(mine, staff_user, title=f"Sent {n}").pk).update(status="sent")
    many = queries_for_home()

    assert many == few, (few, many)
    print(f"console home: {many} queries with 20 sends listed")
