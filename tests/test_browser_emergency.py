"""In a real browser, a Staff member with the emergency permission sends an alert from a template in three steps:
the home's task link, pick the template, fill it in, confirm (reach per channel, preview, estimate), send, and land
on the alert's Watch page. axe-core finds nothing serious on any step."""

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.models import Cohort, Role
from notifications.models import IncidentTemplate, Notification

from .browser import assert_accessible, sign_in, with_axe
from .conftest import make_user
from .incident_support import starter_library  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_emergency_alert_goes_from_a_template_in_three_steps(page, starter_library, settings):
    from playwright.sync_api import expect

    settings.SMS_RATE_LIMIT = "1"
    sender = make_user("e5000001", role=Role.STAFF, is_staff=True, email="safety@example.edu")
    sender.groups.add(Group.objects.get(name=Role.EMERGENCY))
    cohort = Cohort.objects.create(code="cs101-2026", name="Computer Science 101")
    cohort.managers.add(sender)
    cohort.members.add(*[make_user(f"s90000{n}", phone=f"+1555010000{n}", phone_verified_at=timezone.now())
                         for n in range(3)])
    template = IncidentTemplate.objects.get(kind="fire_evacuation")
    with_axe(page)
    sign_in(page, sender.username, f"pw-{sender.username}")
    page.goto("/admin/")

    page.get_by_role("link", name="Send an emergency alert").click()  # from the home
    assert_accessible(page)
    page.locator(f"#template-{template.pk}").get_by_role("link", name="Use this template").click()  # step 1
    assert_accessible(page)
    page.get_by_label("Building").fill("Library")  # step 2
    page.get_by_label("Instructions").fill("Use the north stairs.")
    page.get_by_label("Exercise", exact=False).check()
    page.get_by_label("Computer Science 101").check()
    page.get_by_role("button", name="Review before sending").click()

    expect(page.locator("#estimate")).to_be_visible()  # step 3
    assert page.locator("#estimate .estimate-sms .recipients").inner_text() == "3"
    assert "SMS_RATE_LIMIT" in page.locator("#estimate .estimate-sms").inner_text()
    assert "Evacuate Library now" in page.locator("#preview").inner_text()
    assert page.locator("#plan .plan-sms .receive").inner_text().startswith("3")
    assert_accessible(page)
    page.get_by_role("button", name="Send the alert now").click()

    notification = Notification.objects.get()
    expect(page).to_have_url(f"{page.base_url}/admin/notifications/notification/{notification.pk}/change/")
    assert (notification.template_id, notification.template_version) == (template.pk, template.version)
    assert notification.alert_status == "exercise" and notification.title == "Evacuate Library now"
