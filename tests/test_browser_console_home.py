"""In a real browser, as Admin and as Staff, in English and in French: the console's home with a send running
(live progress from real workers and a local SMTP server), channel health, the SMS test without a phone,
an API key added and revoked, the console's 403 page and the favicon. axe-core on every page."""

import re

import pytest
from django.contrib.admin.models import LogEntry

from accounts.models import ApiKey, Cohort
from notifications.models import Notification
from notifications.services import notification_send

from .browser import SCREENSHOTS, assert_accessible, english_left_on_french_page, sign_in, with_axe
from .conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def accessible(page):
    """assert_accessible, forgetting what axe-core itself made the CSP refuse while it ran (on the API key
    form, axe's checks around select2 apply two inline styles): only the page's own requests count."""
    before = len(page.csp_reports)
    assert_accessible(page)
    del page.csp_reports[before:]


def in_both_languages(page, user, *, data=()):
    """The current page passes axe in English, then shows no English left in French (and passes axe there too);
    the user is back in English afterwards."""
    accessible(page)
    left = english_left_on_french_page(page, user, data=data)
    assert left == [], f"English left on the French page {page.url}: {left}"
    accessible(page)
    user.language = "en"
    user.save(update_fields=["language"])
    page.reload()


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)


@pytest.mark.worker
@pytest.mark.slow
def test_staff_watch_a_send_progress_live_on_the_home_and_meet_health_and_the_403(page, broker, smtp_peer, workers,
                                                                                   staff_user):
    from playwright.sync_api import expect

    cohort = Cohort.objects.create(code="cs101-2026", name="Computer Science 101")
    cohort.managers.add(staff_user)
    cohort.members.add(*[make_user(f"s90000{n:02d}") for n in range(30)])
    notification, _ = notification_send(sender=staff_user, notifier="academic", category="announcement",
                                        title="Room change for CS101", body="Tomorrow's lecture moves to room B12.",
                                        channels=["email", "inbox"], audience={"cohorts": [cohort.code]})
    polls = []
    page.on("response", lambda r: polls.append(r.url) if r.url.endswith("/admin/running.json") else None)
    with_axe(page)
    sign_in(page, staff_user.username, f"pw-{staff_user.username}")
    page.goto("/admin/")

    running = page.locator(f'#running tr[data-id="{notification.pk}"]')
    expect(running).to_be_visible()
    assert "Waiting for a worker to start it" in running.inner_text()  # no worker yet
    assert page.locator("#system").count() == 0 and page.locator('a[href="/admin/django_q/"]').count() == 0
    assert page.get_by_role("link", name="Compose a notification").is_visible()
    accessible(page)
    screenshot(page, "home-staff")

    workers()
    sent = page.locator(f'#recent tr[data-id="{notification.pk}"]')
    expect(sent).to_contain_text("Sent", timeout=90_000)  # the page reloaded itself when the send ended
    expect(sent).to_contain_text("30 of 30 reached")
    assert polls, "the home never asked for the running sends' progress"
    assert page.locator(f'#running tr[data-id="{notification.pk}"]').count() == 0
    assert len(smtp_peer.messages) == 30
    in_both_languages(page, staff_user, data=["Room change for CS101", staff_user.username, "cs101-2026"])

    page.goto("/admin/health/")
    expect(page.locator("tr.health-sms")).to_contain_text("Not configured — set TWILIO_ACCOUNT_SID")
    in_both_languages(page, staff_user)
    screenshot(page, "health")

    page.goto("/admin/health/sms/")
    expect(page.locator("#no-test-address")).to_contain_text("your account has no mobile phone number")
    assert page.get_by_role("button", name=re.compile("Send a test")).count() == 0
    in_both_languages(page, staff_user)
    page.goto("/admin/health/email/")
    page.get_by_role("button", name="Send a test to teacher@example.edu").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Test message to teacher@example.edu accepted")
    accessible(page)

    response = page.goto("/admin/accounts/user/import-roster/")  # Admin only
    assert response.status == 403
    expect(page.locator("#access-denied")).to_contain_text("your role is Staff")
    in_both_languages(page, staff_user)
    screenshot(page, "403")
    page.get_by_role("link", name="Back to the console home").click()
    assert page.url.endswith("/admin/")
    assert page.csp_reports == []


def test_admin_sees_the_system_tables_adds_an_api_key_by_owner_and_revokes_it(page, admin_user, staff_user):
    from playwright.sync_api import expect

    with_axe(page)
    sign_in(page, admin_user.username, f"pw-{admin_user.username}")
    page.goto("/admin/")
    system = page.locator("#system")
    expect(system).to_contain_text("Task queue")
    assert system.locator('a[href="/admin/channels_app/performancemetric/"]').count() >= 1
    assert page.locator('#content-main a[href="/admin/django_q/"]').count() == system.locator(
        'a[href="/admin/django_q/"]').count() == 1
    in_both_languages(page, admin_user, data=[admin_user.username])
    screenshot(page, "home-admin")

    page.goto("/admin/accounts/apikey/add/")
    assert page.locator('[name^="revoked_at"]').count() == 0
    in_both_languages(page, admin_user)
    page.locator(".field-user .select2-selection").click()
    page.locator(".select2-dropdown .select2-search__field").fill("t2000")
    page.locator(".select2-results__option", has_text=staff_user.username).click()
    page.get_by_label("Name").fill("LMS")
    page.get_by_label("Send notifications").check()
    screenshot(page, "apikey-add")  # axe ran on the empty form above (select2 renames its box once a person is chosen)
    page.get_by_role("button", name="Save", exact=True).click()

    key = ApiKey.objects.get(name="LMS")
    assert key.user == staff_user and key.scopes == ["send"] and key.revoked_at is None
    expect(page.locator("#api-key")).to_contain_text(key.prefix + ".")
    page.goto(f"/admin/accounts/apikey/{key.pk}/change/")
    accessible(page)
    page.get_by_role("button", name="Revoke this key").click()
    expect(page.locator("ul.messagelist")).to_contain_text("is revoked")
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert LogEntry.objects.filter(object_id=str(key.pk), user=admin_user,
                                   change_message__startswith="Revoked").count() == 1
    in_both_languages(page, admin_user, data=[str(key), f"› {key}", staff_user.username])

    response = page.request.get("/favicon.ico")  # fetched, not opened: chromium's image viewer styles inline
    assert response.status == 200 and response.body()[:4] == b"\0\0\1\0"
    page.goto("/admin/")
    assert page.locator('link[rel="icon"][href="/favicon.ico"]').count() == 1
    assert page.csp_reports == []
    assert Notification.objects.count() == 0
