"""In a real browser: a staff member composes to a cohort, confirms, and watches the progress reach 100%."""

import re

import pytest

from accounts.models import Cohort
from notifications.models import Delivery, Notification

from .browser import sign_in
from .conftest import make_user


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_composes_confirms_and_watches_a_cohort_notification_reach_everyone(page, broker, smtp_peer, workers,
                                                                               staff_user, settings):
    cohort = Cohort.objects.create(code="cs101-2026", name="Computer Science 101")
    cohort.managers.add(staff_user)
    cohort.members.add(*[make_user(f"s90000{n:02d}") for n in range(12)])
    workers()

    # The live server serves static files through the finders, by their unhashed names.
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    sign_in(page, staff_user.username, f"pw-{staff_user.username}")
    page.goto("/admin/notifications/notification/add/")
    page.get_by_label("Title").fill("Room change for CS101")
    page.get_by_label("Body").fill("Tomorrow's lecture moves to room B12.")
    page.get_by_label("Email").check()
    page.get_by_label("Inbox").check()
    page.get_by_label("cs101-2026 — Computer Science 101").check()
    page.get_by_role("button", name="Review before sending").click()

    assert page.locator("#people-count").inner_text() == "12"
    assert page.locator("tr.plan-email td").nth(1).inner_text() == "12"
    assert "Tomorrow's lecture moves to room B12." in page.locator("#preview").inner_text()
    assert Notification.objects.count() == 0
    page.get_by_role("button", name="Send now").click()

    page.wait_for_url(re.compile(r"/admin/notifications/notification/\d+/change/"))
    page.wait_for_function("document.getElementById('progress-percent').textContent === '100%'", timeout=60_000)
    page.wait_for_selector("#fanout-progress[data-final='1']", timeout=30_000)  # reloaded with the final tables
    assert page.locator("#fanout-progress").get_attribute("value") == "100"
    assert page.locator("#reached").inner_text() == "12"
    notification = Notification.objects.get()
    assert notification.sender == staff_user
    assert Delivery.objects.filter(notification=notification, status="sent").count() == 24
    assert len(smtp_peer.messages) == 12
