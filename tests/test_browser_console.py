"""In a real browser: a staff member composes to a cohort, confirms, and watches the progress reach 100%."""

import re

import pytest

from accounts.models import Cohort
from notifications.models import Delivery, Notification

from .browser import sign_in, with_axe
from .conftest import make_user


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_composes_confirms_and_watches_a_cohort_notification_reach_everyone(page, broker, smtp_peer, workers,
                                                                               staff_user):
    cohort = Cohort.objects.create(code="cs101-2026", name="Computer Science 101")
    cohort.managers.add(staff_user)
    cohort.members.add(*[make_user(f"s90000{n:02d}") for n in range(12)])
    workers()

    from playwright.sync_api import expect

    with_axe(page)  # records anything the Content-Security-Policy blocks
    sign_in(page, staff_user.username, f"pw-{staff_user.username}")
    page.goto("/admin/notifications/notification/add/")
    page.get_by_label("Title (English)").fill("Room change for CS101")
    page.get_by_label("Message (English)").fill("Tomorrow's lecture moves to room B12.")
    page.get_by_label("Email").check()
    page.get_by_label("Inbox").check()
    page.get_by_label("cs101-2026 — Computer Science 101").check()
    page.get_by_role("button", name="Review before sending").click()

    assert page.locator("#people-count").inner_text() == "12"
    assert page.locator("tr.plan-email td.receive").inner_text().startswith("12 of 12")
    assert "Tomorrow's lecture moves to room B12." in page.locator("#preview").inner_text()
    assert Notification.objects.count() == 0
    page.get_by_role("button", name="Send now").click()

    page.wait_for_url(re.compile(r"/admin/notifications/notification/\d+/change/"))
    expect(page.locator("#progress-percent")).to_have_text("100%", timeout=60_000)
    expect(page.locator("#fanout-progress")).to_have_attribute("data-final", "1", timeout=30_000)  # reloaded
    assert page.locator("#fanout-progress").get_attribute("value") == "100"
    assert page.locator("#reached").inner_text() == "12"
    notification = Notification.objects.get()
    assert notification.sender == staff_user
    assert Delivery.objects.filter(notification=notification, status="sent").count() == 24
    assert len(smtp_peer.messages) == 12
    assert page.csp_reports == []  # the refresh script is a static file the policy allows
