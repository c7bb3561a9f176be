"""In a real browser, as Admin and as Staff, in English and in French: compose (the SMS counter counting as you
type, the categories of the kind of message), confirm (per channel who receives it and who does not and why),
start again with everything kept, and send; real workers deliver each recipient the version of their language
to a local SMTP server. axe-core finds nothing serious on any page, and a French console page has no English left."""

import re

import pytest

from accounts.models import Cohort
from notifications.models import Notification

from .browser import SCREENSHOTS, assert_accessible, english_left_on_french_page, sign_in, with_axe
from .conftest import make_user
from .peers import wait_until

TITLE, BODY = "Room change for CS101", "Tomorrow's lecture moves to room B12."
TITLE_FR, BODY_FR = "Changement de salle pour CS101", "Le cours de demain a lieu en salle B12, reçu ?"

# What each console language calls the things the test reads.
WORDS = {
    "en": {"of": "0 of 5", "default_off": "off by default for “Course announcement” on SMS",
           "sent": "accepted for cohort Computer Science 101 (cs101-2026)"},
    "fr": {"of": "0 sur 5", "default_off": "désactivé par défaut pour « Annonce de cours » en SMS",
           "sent": "accepté pour la cohorte Computer Science 101 (cs101-2026)"},
}


def counter(page, name):
    box = page.locator(f"#sms-{name}")
    return {part: box.locator(f'[data-part="{part}"]').inner_text() for part in ("characters", "segments", "encoding")}


def english_left_in_content(page, user, data):
    """english_left_on_french_page, within the page's own content (#content): the console's shared navigation
    (the app list, the site header) is the console home's to translate, not these pages'."""
    left = english_left_on_french_page(page, user, data=data)
    content = page.locator("#content").inner_text()
    return [text for text in left if text in content]


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role, language", [("staff", "en"), ("admin", "fr"), ("staff", "fr"), ("admin", "en")])
def test_it_composes_confirms_starts_again_and_sends_in_each_language(page, broker, smtp_peer, workers, role,
                                                                     language, staff_user, admin_user):
    sender = staff_user if role == "staff" else admin_user
    sender.language, sender.timezone = language, "Europe/Paris"
    sender.save(update_fields=["language", "timezone"])
    cohort = Cohort.objects.create(code="cs101-2026", name="Computer Science 101")
    cohort.managers.add(staff_user)
    english = [make_user(f"s90000{n}", first_name=f"Ada{n}") for n in range(3)]
    french = [make_user(f"s90001{n}", first_name=f"Léa{n}", language="fr") for n in range(2)]
    cohort.members.add(*english, *french)
    workers()
    shots = role == "staff" or language == "fr"  # one set of screenshots per language
    suffix = "-fr" if language == "fr" else ""
    data = [TITLE, BODY, TITLE_FR, BODY_FR, "cs101-2026", "Computer Science 101", "cs101-2026 — Computer Science 101",
            "Europe/Paris", "GSM-7", "UCS-2", sender.username, "Email", "Inbox", "SMS"]

    with_axe(page)
    sign_in(page, sender.username, f"pw-{sender.username}")
    page.goto("/admin/notifications/notification/add/")
    assert_accessible(page)
    if language == "fr":
        assert english_left_in_content(page, sender, data) == []

    # The categories follow the kind of message; the severity is asked for alerts only.
    page.select_option("#id_notifier", "security")
    assert page.locator("#id_category").input_value() == "security"
    assert page.locator(".field-severity").is_visible()
    page.select_option("#id_notifier", "academic")
    assert page.locator("#id_category option[value=security]").is_disabled()
    assert not page.locator(".field-severity").is_visible()
    page.select_option("#id_category", "announcement")

    # The SMS counter counts as you type: GSM-7, then UCS-2 for a character outside it.
    assert counter(page, "body")["characters"] == "0"
    page.locator("#id_title").fill(TITLE)
    page.locator("#id_body").fill(BODY)
    assert counter(page, "body") == {"characters": str(len(f"{TITLE}: {BODY}")), "segments": "1", "encoding": "GSM-7"}
    page.locator("#id_title_fr").fill(TITLE_FR)
    page.locator("#id_body_fr").fill(BODY_FR)
    # 78 characters: one SMS in GSM-7, but the "ç" makes it UCS-2, 67 a segment when split.
    assert counter(page, "body_fr") == {"characters": str(len(f"{TITLE_FR}: {BODY_FR}")), "segments": "2",
                                        "encoding": "UCS-2"}
    page.locator("#id_body").press_sequentially(" " + "x" * 120)
    assert counter(page, "body")["segments"] == "2"
    page.locator("#id_body").fill(BODY)
    for channel in ("email", "sms", "inbox"):
        page.locator(f"input[name=channels][value={channel}]").check()
    page.locator(f"input[name=cohorts][value='{cohort.pk}']").check()
    if shots:
        page.screenshot(path=str(SCREENSHOTS / f"console-compose{suffix}.png"), full_page=True)
    page.locator("#compose-form input[type=submit]").click()
    page.wait_for_load_state()

    # The confirmation: SMS off by default for announcements, said with the reason; a preview per language.
    assert page.locator("#people-count").inner_text() == "5"
    sms = page.locator("tr.plan-sms")
    assert sms.locator("td.receive").inner_text().startswith(WORDS[language]["of"])
    assert WORDS[language]["default_off"] in sms.locator("td.reasons").inner_text()
    assert (sms.locator("td.reasons a").count() == 1) == (role == "admin")  # only Admin may change the defaults
    assert page.locator("tr.plan-email td.receive").inner_text().startswith("5")
    assert TITLE_FR in page.locator("#preview-fr").inner_text()
    assert TITLE in page.locator("#preview-en").inner_text()
    assert page.locator("#sms-count-fr").inner_text().count("UCS-2") == 1
    assert Notification.objects.count() == 0
    assert_accessible(page)
    if shots:
        page.screenshot(path=str(SCREENSHOTS / f"console-compose-confirm{suffix}.png"), full_page=True)
    if language == "fr":
        assert english_left_in_content(page, sender, data + [f"{TITLE}: {BODY}"]) == []

    # Start again: back on the form with everything typed, then confirm again.
    page.locator("input[name=_edit]").click()
    page.wait_for_load_state()
    assert page.locator("#id_title").input_value() == TITLE
    assert page.locator("#id_body_fr").input_value() == BODY_FR
    assert page.locator(f"input[name=cohorts][value='{cohort.pk}']").is_checked()
    assert page.locator("input[name=channels][value=sms]").is_checked()
    page.locator("#compose-form input[type=submit]").click()
    page.wait_for_load_state()
    page.locator("input[name=_send]").click()

    page.wait_for_url(re.compile(r"/admin/notifications/notification/\d+/change/"))
    assert WORDS[language]["sent"] in page.locator(".messagelist").inner_text()
    wait_until(lambda: len(smtp_peer.messages) >= 5, timeout=60, message="five emails")
    subjects = {m["To"]: m["Subject"] for m in smtp_peer.messages}
    assert {subjects[user.email] for user in english} == {TITLE}
    assert {subjects[user.email] for user in french} == {TITLE_FR}
    notification = Notification.objects.get()
    assert notification.sender == sender
    assert notification.translations == {"fr": {"title": TITLE_FR, "body": BODY_FR}}
