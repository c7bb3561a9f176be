"""The console in French: no English left on a console page shown to a French-speaking user.

Each page is rendered for the same Admin twice, with User.language "fr" then "en" (the console's
middleware activates it); a text node with words that is the same in both is English left over,
unless it is a value the test created (names, titles, codes) or a word French shares with English.
"""

import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.utils import translation

from accounts.models import ApiKey, Role, User
from notifications.models import Delivery, IncidentTemplate, LedgerEntry, Notification
from notifications.selectors import reason_label
from notifications.services import notification_send
from notifications.services.incidents import incident_follow_up

from .api_support import API, jwt_client
from .browser import SAME_IN_BOTH_LANGUAGES
from .conftest import make_user
from .console_helpers import sent_notification, two_cohorts
from .incident_support import starter_library  # noqa: F401

COMPOSE = "/admin/notifications/notification/add/"


class TextNodes(HTMLParser):
    """The texts a reader sees in the console's language: text nodes, titles, labels, placeholders, button values.

    Skipped: script, style, and what the page marks as being in another language or not to translate
    (a message preview in its recipient's language carries `lang`; data carries `translate="no"`).
    """

    SKIPPED = {"script", "style", "noscript"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts, self.open, self.skip_below = set(), [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.skip_below is None:
            for name in ("title", "aria-label", "placeholder"):
                self.add(attrs.get(name))
            if tag == "input" and attrs.get("type") in ("submit", "button"):
                self.add(attrs.get("value"))
        if tag in self.VOID:
            return
        self.open.append(tag)
        other_language = tag != "html" and "lang" in attrs
        if self.skip_below is None and (tag in self.SKIPPED or other_language or attrs.get("translate") == "no"
                                        or "hidden" in attrs):
            self.skip_below = len(self.open)

    def handle_endtag(self, tag):
        if tag in self.VOID or tag not in self.open:
            return
        while self.open and self.open.pop() != tag:
            pass
        if self.skip_below is not None and len(self.open) < self.skip_below:
            self.skip_below = None

    def handle_data(self, data):
        if self.skip_below is None:
            self.add(data)

    def add(self, text):
        text = re.sub(r"\s+", " ", text or "").strip()
        if text:
            self.texts.add(text)


def page_texts(response):
    assert response.status_code == 200, response.status_code
    parser = TextNodes()
    parser.feed(response.content.decode())
    return parser.texts


def has_words(text):
    return re.search(r"[^\W\d_]{3,}", text) is not None


def english_left(client, user, request, *, data=()):
    """The texts of a page shown to `user` in French that are the same in English. `request(client)` renders it."""
    texts = {}
    for language in ("fr", "en"):
        user.language = language
        user.save(update_fields=["language"])
        texts[language] = page_texts(request(client))
    allowed = SAME_IN_BOTH_LANGUAGES | set(data)

    def is_data(text):
        return text in allowed or any(value and value in text and len(text) <= len(value) + 3 for value in allowed)

    return sorted(text for text in texts["fr"] & texts["en"] if has_words(text) and not is_data(text))


@pytest.fixture
def console(db, client, starter_library):
    admin = make_user("a3000009", role=Role.ADMIN, is_staff=True, is_superuser=True, email="admin9@example.edu",
                      first_name="Camille", last_name="Durand", language="fr")
    staff = make_user("t2000001", role=Role.STAFF, is_staff=True, email="teacher@example.edu")
    mine, theirs, other = two_cohorts(staff)
    notification = sent_notification(mine, staff, statuses=("sent", "skipped"))
    skipped = Delivery.objects.get(notification=notification, status="skipped")
    skipped.reason = Delivery.Reason.OPTED_OUT
    skipped.save(update_fields=["reason"])
    alert, _ = notification_send(sender=admin, notifier="security", title="Fire drill", body="Leave by stair B.",
                                 audience={"cohorts": ["ma201"]}, data={"severity": "high"})
    key = ApiKey.objects.create(user=admin, name="timetable sync")
    client.force_login(admin)
    student = mine.members.order_by("pk").first()
    data = {"Computer Science 101", "Mathematics 201", "cs101", "ma201", "Room change", "B12", "Fire drill",
            "Leave by stair B.", "timetable sync", "Camille", "Durand", "Camille Durand", "admin9@example.edu",
            "teacher@example.edu", "other@example.edu", admin.username, staff.username, other.username,
            *(u.username for u in mine.members.all()), *(u.username for u in theirs.members.all()),
            *(u.email for u in mine.members.all()), *(u.email for u in theirs.members.all()),
            str(mine), str(theirs), "manifest.csv", "users.csv", "classes.csv", "enrollments.csv",
            # the same in French: a code, an encoding, a plural
            "Code", "GSM-7", "2 notifications",
            "username", "cohorts",  # the CSV import's column names
            str(key),
            # the incident templates' names (content an administrator writes), and a word French shares
            *IncidentTemplate.objects.values_list("name", flat=True), "Version"}
    return {"admin": admin, "notification": notification, "alert": alert, "delivery": skipped,
            "student": student, "data": data, "cohort": mine}


PAGES = {
    "home": "/admin/",
    "notifications": "/admin/notifications/notification/",
    "compose": COMPOSE,
    "people": "/admin/people/?q=s10",
    "health": "/admin/health/",
    "health email": "/admin/health/email/",
    "health sms": "/admin/health/sms/",
    "health push": "/admin/health/push/",
    "api keys": "/admin/accounts/apikey/",
    "api key add": "/admin/accounts/apikey/add/",
    "users": "/admin/accounts/user/",
    "import csv": "/admin/accounts/user/import/",
    "import oneroster": "/admin/accounts/user/import-roster/",
    "cohorts": "/admin/accounts/cohort/",
    "category defaults": "/admin/notifications/categorydefault/",
    "compliance ledger": "/admin/notifications/ledgerentry/",
    "text messages received": "/admin/notifications/smsreply/?matched=no",
    "emergency alert": "/admin/emergency/",
    "incident templates": "/admin/notifications/incidenttemplate/",
    "incident template add": "/admin/notifications/incidenttemplate/add/",
    "drills": "/admin/drills/",
}


@pytest.mark.django_db
@pytest.mark.parametrize("page", sorted(PAGES))
def test_it_shows_no_english_on_a_french_console_page(console, client, page):
    assert english_left(client, console["admin"], lambda c: c.get(PAGES[page]), data=console["data"]) == []


@pytest.mark.django_db
def test_it_shows_no_english_on_the_pages_of_a_notification_a_person_and_a_delivery(console, client):
    entry = LedgerEntry.objects.filter(notification_id=console["alert"].pk).last()
    staff = User.objects.get(username="t2000001")
    staff.groups.add(Group.objects.get(name=Role.EMERGENCY))
    # Drafted by another person: the Admin sees the Approve and Refuse buttons.
    to_approve, _ = notification_send(sender=staff, notifier="security", title="Fire drill", body="Leave by stair B.",
                                      audience={"cohorts": ["cs101"]}, data={"severity": "high"},
                                      alert_status="exercise", escalation_delay_minutes=5)
    pages = [f"/admin/notifications/notification/{console['notification'].pk}/change/",
             f"/admin/notifications/notification/{console['alert'].pk}/change/",
             f"/admin/notifications/notification/{to_approve.pk}/change/",
             f"/admin/people/{console['student'].pk}/",
             f"/admin/notifications/delivery/{console['delivery'].pk}/change/",
             f"/admin/accounts/cohort/{console['cohort'].pk}/change/",
             f"/admin/accounts/apikey/{ApiKey.objects.get().pk}/change/",
             "/admin/notifications/delivery/", "/admin/people/",
             f"/admin/notifications/ledgerentry/{entry.pk}/change/"]
    for url in pages:
        assert (url, english_left(client, console["admin"], lambda c: c.get(url), data=console["data"])) == (url, [])


@pytest.mark.django_db
def test_it_shows_no_english_on_a_compose_form_with_errors_nor_on_its_confirmation(console, client):
    cohort = console["cohort"]
    with_errors = {"notifier": "security", "category": "security", "priority": "normal", "title": "Fire drill",
                   "body": "Leave by stair B.", "title_fr": "Exercice", "cohorts": [cohort.pk], "token": "tok-1"}
    confirmation = {"notifier": "academic", "category": "announcement", "priority": "normal",
                    "channels": ["email", "inbox", "sms"], "title": "Room change", "body": "B12",
                    "cohorts": [cohort.pk], "token": "tok-2"}
    data = console["data"] | {"Exercice"}
    for form in (with_errors, confirmation):
        assert english_left(client, console["admin"], lambda c: c.post(COMPOSE, form), data=data) == []
    assert Notification.objects.filter(title="Room change").count() == 1  # the console's own, not a new one


@pytest.mark.django_db
def test_it_shows_no_english_on_the_steps_of_an_emergency_alert_nor_on_a_template(console, client):
    template = IncidentTemplate.objects.get(kind="active_threat")
    fill = f"/admin/emergency/{template.pk}/"
    fields = {"var_building": "Library", "var_time": "14:05", "var_instructions": "Stay in room 2.",
              "alert_status": "exercise", "cohorts": [console["cohort"].pk], "checkin": "on",
              "version": str(template.version), "token": "tok-emergency"}
    data = console["data"] | {"Library", "14:05", "Stay in room 2.", template.title, template.body,
                              f"{template.name}, version {template.version}", "ALERT_ESTIMATE_RATES", "USD", str(template),
                              template.translations["fr"]["title"], template.translations["fr"]["body"]}
    pages = [(fill, None), (fill, {**fields, "var_time": ""}), (fill, fields),
             (f"/admin/notifications/incidenttemplate/{template.pk}/change/", None)]
    for url, form in pages:
        def request(c, url=url, form=form):
            return c.post(url, form) if form else c.get(url)
        assert (url, form and sorted(form), english_left(client, console["admin"], request, data=data)) == (
            url, form and sorted(form), [])
    assert not Notification.objects.filter(template=template).exists()


@pytest.mark.django_db
def test_it_gives_the_sends_own_refusals_in_french_on_the_compose_form_and_in_the_api(console, client):
    form = {"notifier": "academic", "category": "announcement", "priority": "normal", "title": "Room change",
            "body": "B12", "title_fr": "Changement de salle", "users": "nobody99", "token": "tok-3"}

    errors = client.post(COMPOSE, form).context["form"].errors

    assert errors["body_fr"] == ["Un message est obligatoire avec un titre traduit."]
    assert "Personnes inconnues : nobody99." in errors["__all__"]

    response = jwt_client(console["admin"]).post(f"{API}notifications/", {
        "notifier": "security", "category": "grade", "title": "Gas\nleak", "body": "Leave now.",
        "audience": {"users": ["nobody99", "ghost"]}}, format="json", HTTP_ACCEPT_LANGUAGE="fr")

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "audience": ["Personnes inconnues : ghost, nobody99."],
        "category": ["Les notifications « Sécurité et urgence » ne peuvent pas être de la catégorie 'grade' ; "
                     "choisissez parmi : security."],
        "data": ["SecurityNotifier exige 'severity' dans data."],
        "title": ["Un titre tient sur une ligne : il contient un saut de ligne."],
    }


@pytest.mark.django_db
def test_it_refuses_a_console_action_in_french(console, client):
    finished = console["notification"]
    Notification.objects.filter(pk=finished.pk).update(status="sent")

    response = client.post("/admin/notifications/notification/",
                           {"action": "cancel", "_selected_action": [finished.pk], "index": 0}, follow=True)

    said = [str(m) for m in get_messages(response.wsgi_request)] or [str(m) for m in response.context["messages"]]
    assert any(f"La notification {finished.pk} est « envoyée » et ne peut pas être annulée" in m for m in said), said


def test_it_names_the_reasons_of_a_delivery_report_in_the_active_language():
    with translation.override("fr"):
        assert (reason_label(""), reason_label("opted_out")) == ("ignorée", "désabonné")
    with translation.override("en"):
        assert (reason_label(""), reason_label("opted_out")) == ("skipped", "opted out")


@pytest.mark.django_db
def test_it_shows_no_english_on_an_incident_thread_its_forms_and_their_errors(console, client, settings):
    settings.EMERGENCY_TWO_PERSON_RULE = False  # the thread is under test here, not the approval
    alert = console["alert"]
    update, _ = incident_follow_up(alert, sender=console["admin"], kind="update", title="Fire drill: stair A",
                                   body="Stair B is closed.")
    bad_follow_up = {"kind": "update", "update-title": "Fire drill", "update-body": "x",
                     "update-title_fr": "Exercice"}
    data = console["data"] | {"Fire drill: stair A", "Stair B is closed.", "Exercice", "x"}
    watch = f"/admin/notifications/notification/{update.pk}/"

    assert english_left(client, console["admin"], lambda c: c.get(f"{watch}change/"), data=data) == []

    def with_errors(c):
        response = c.post(f"{watch}follow-up/", bad_follow_up)
        response.status_code = 200 if response.status_code == 400 else response.status_code
        return response

    assert english_left(client, console["admin"], with_errors, data=data) == []
