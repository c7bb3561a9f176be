"""In a real browser, with real workers and a local SMTP server: a send watched live to 100% (totals fixed from the
start), its acknowledgements by name, its CSV, a person's page from a name, and a scheduled send cancelled from its
page — as Admin in English and as Staff in French, axe-core finding nothing serious on any page."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Cohort, Role
from notifications.models import InboxMessage, Notification, Preference
from notifications.services import notification_send

from .browser import SCREENSHOTS, assert_accessible, english_left_on_french_page, sign_in, with_axe
from .conftest import make_user
from .delivery_helpers import students

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def watch_live(page, notification, audience):
    """Follow the Watch page until it says 100%; every total shown on the way is the audience's."""
    from playwright.sync_api import expect

    seen_totals, sentences = set(), set()
    deadline = timezone.now() + timedelta(seconds=90)
    while page.locator("#progress-percent").inner_text() != "100%" and timezone.now() < deadline:
        seen_totals.add(page.locator("#audience").inner_text())
        sentences.add(page.locator("#progress-sentence").inner_text())
        page.wait_for_timeout(200)
    expect(page.locator("#fanout-progress")).to_have_attribute("data-final", "1", timeout=30_000)  # reloaded, final
    assert seen_totals <= {str(audience)}, seen_totals
    assert not any(re.search(r"\b0 (of|sur) 0\b", sentence) for sentence in sentences), sentences
    return sentences


def a_send(sender, cohort, **fields):
    notification, _ = notification_send(sender=sender, notifier="academic", category="announcement",
                                        title=fields.pop("title", "Room change"), body="Tomorrow's lecture is in B12.",
                                        channels=["email", "inbox"], audience={"cohorts": [cohort.code]},
                                        requires_ack=True, **fields)
    return notification


@pytest.fixture
def campus(staff_user, settings):
    settings.FANOUT_CHUNK_SIZE = 25  # several pages: the total must not grow as they are planned
    cohort = Cohort.objects.create(code="cs101-2026", name="Computer Science 101")
    cohort.managers.add(staff_user)
    people = students("s1", 120)
    people[0].first_name, people[0].last_name = "Léa", "Martin"
    people[0].save()
    cohort.members.add(*people)
    Preference.objects.create(user=people[1], category="announcement", channel="email", enabled=False)
    return cohort, people


@pytest.mark.parametrize("role, language", [("admin", "en"), ("staff", "fr")])
def test_it_watches_a_send_live_then_cancels_one_and_explains_a_person(page, broker, smtp_peer, workers, campus,
                                                                      admin_user, staff_user, role, language):
    from playwright.sync_api import expect

    cohort, people = campus
    viewer = admin_user if role == "admin" else staff_user
    viewer.language = language
    viewer.save(update_fields=["language"])
    notification = a_send(viewer, cohort)
    suffix = "" if language == "en" else "-fr"

    with_axe(page)
    sign_in(page, viewer.username, f"pw-{viewer.username}")
    page.goto(f"/admin/notifications/notification/{notification.pk}/change/")
    assert page.locator("#audience").inner_text() == "120"  # before any worker runs: the audience, counted
    workers()
    watch_live(page, notification, 120)

    assert page.locator("#reached").inner_text() == "120"
    assert page.locator("#fanout-progress").get_attribute("value") == "100"
    assert page.locator("tr.channel-email-0 td").last.inner_text() == "120"
    assert page.locator("tr.reason-opted_out th").inner_text() == ("Opted out" if language == "en" else "Désabonné")
    assert page.locator("#act-cancel").is_hidden() and page.locator("#act-retry").is_hidden()
    assert len(smtp_peer.messages) == 119
    assert page.csp_reports == []  # the refresh script is a static file the policy allows

    InboxMessage.objects.filter(notification=notification, recipient=people[0]).update(acknowledged_at=timezone.now())
    page.reload()
    page.get_by_label("Find a recipient" if language == "en" else "Trouver un destinataire").fill("martin")
    page.locator(".fn-ack-search button").click()
    assert page.locator("#ack-table tbody tr").count() == 1
    assert page.locator("#ack-table tbody tr td").first.inner_text() == "Léa Martin"
    assert_accessible(page)
    page.screenshot(path=str(SCREENSHOTS / f"console-watch{suffix}.png"), full_page=True)
    data = {"Room change", "Léa Martin", "s100000", "s100001", "Computer Science 101", "cs101-2026", viewer.username,
            "Course announcement", "Publication"}
    if language == "fr":
        assert english_left_on_french_page(page, viewer, data=data) == []

    # The CSV of the deliveries, with the reasons, as the page offers it.
    csv_text = page.request.get(page.locator("#export").get_attribute("href")).text().lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert len(rows) == 1 + 240
    reasons = {row[7] for row in rows[1:] if row[1] == people[1].username}
    assert reasons == {"", "Opted out" if language == "en" else "Désabonné"}

    # Who did not get it, and why: the person's page from their name.
    page.goto(f"/admin/notifications/notification/{notification.pk}/change/?ack_q={people[1].username}")
    page.locator("#ack-table tbody tr td a").first.click()
    page.wait_for_url(re.compile(rf"/admin/people/{people[1].pk}/$"))
    grid_email = page.locator("#preference-grid tbody tr").first.locator("td.pref-email")
    assert ("off" if language == "en" else "désactivé") in grid_email.inner_text()
    assert "Computer Science 101" in page.locator("#person-cohorts").inner_text()
    assert page.locator("#person-deliveries tbody tr").count() == 2
    assert_accessible(page)
    page.screenshot(path=str(SCREENSHOTS / f"console-person{suffix}.png"), full_page=True)
    if language == "fr":
        left = english_left_on_french_page(page, viewer, data=data | {
            people[1].email, "Student1", f"Student1 ({people[1].username})", "cs101-2026 — Computer Science 101",
            "UTC"})
        assert left == []

    # A scheduled send, cancelled from its own page: back on it, drawn as cancelled, not as a full bar.
    later = a_send(viewer, cohort, title="Exam room", scheduled_for=timezone.now() + timedelta(days=1))
    page.goto(f"/admin/notifications/notification/{later.pk}/change/")
    assert ("Scheduled" if language == "en" else "Programmée") in page.locator("#progress-sentence").inner_text()
    assert page.locator("#act-retry").is_hidden()
    assert_accessible(page)
    page.locator("#act-cancel").click()
    page.wait_for_url(re.compile(rf"/admin/notifications/notification/{later.pk}/change/$"))
    expect(page.locator("#watch-status")).to_have_text("Cancelled" if language == "en" else "Annulée")
    assert page.locator("#fanout-progress").get_attribute("value") == "0"
    assert "120" in page.locator("#progress-sentence").inner_text()  # the audience it was for, not "0 of 0"
    assert page.locator("#act-cancel").is_hidden()
    assert Notification.objects.get(pk=later.pk).status == "cancelled"
    assert_accessible(page)
    page.screenshot(path=str(SCREENSHOTS / f"console-watch-cancelled{suffix}.png"), full_page=True)
    if language == "fr":
        assert english_left_on_french_page(page, viewer, data=data | {"Exam room"}) == []


def test_staff_reach_a_person_from_the_user_list_and_not_someone_outside_their_cohorts(page, campus, staff_user):
    cohort, people = campus
    outsider = make_user("s9999999", role=Role.USER)

    with_axe(page)
    sign_in(page, staff_user.username, f"pw-{staff_user.username}")
    page.goto("/admin/accounts/user/?q=s100000")
    page.get_by_role("link", name="Preferences and deliveries").first.click()
    page.wait_for_url(re.compile(r"/admin/people/\d+/$"))
    assert page.locator("#person-phone").inner_text() == "none: no SMS can be sent"
    assert_accessible(page)

    response = page.goto(f"/admin/people/{outsider.pk}/")
    assert response.status == 404
