"""Compose in the console: a confirmation with counts after preferences and a preview, then the send service."""

import datetime as dt
from io import StringIO

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from channels_app.mixins import sms_count
from notifications.engine import notification_fan_out
from notifications.engine.digest import digests_send
from notifications.models import CategoryDefault, InboxMessage, Notification, Preference
from notifications.services import notification_send
from notifications.services.preferences import preferences_save

from .api_support import API, jwt_client
from .conftest import make_user
from .console_helpers import two_cohorts
from .peers import wait_until

COMPOSE = "/admin/notifications/notification/add/"


def compose_form(cohort, **overrides):
    form = {"notifier": "academic", "category": "announcement", "priority": "normal", "channels": ["email", "inbox"],
            "title": "Room change", "body": "Tomorrow's lecture moves to B12.", "cohorts": [cohort.pk] if cohort else [],
            "users": "", "token": "tok-1"}
    form.update(overrides)
    return form


@pytest.mark.django_db
def test_it_confirms_with_counts_after_preferences_and_a_preview_before_sending(client, staff_user):
    mine, _, _ = two_cohorts(staff_user)
    opted_out = User.objects.get(username="s1000002")
    Preference.objects.create(user=opted_out, category="announcement", channel="email", enabled=False)
    client.force_login(staff_user)

    response = client.post(COMPOSE, compose_form(mine))

    assert response.status_code == 200
    assert "admin/notifications/notification/confirm.html" in [t.name for t in response.templates]
    plan = response.context["plan"]
    assert plan["people"] == 2
    assert plan["channels"]["email"] == {"send": 1, "digest": 0, "skipped": 1, "opted_out": 1,
                                         "reasons": {"opted_out": 1}}
    assert plan["channels"]["inbox"] == {"send": 2, "digest": 0, "skipped": 0, "opted_out": 0, "reasons": {}}
    email = next(row for row in response.context["rows"] if row["channel"] == "email")
    assert (email["receive"], email["not_received"]) == (1, 1)
    assert [(line["code"], line["people"]) for line in email["reasons"]] == [("opted_out", 1)]
    preview = {label: dict(parts) for label, parts in response.context["previews"][0]["channels"]}
    assert preview["Email"]["Subject"] == "Room change"
    assert "Tomorrow's lecture moves to B12." in preview["Email"]["Text"]
    assert preview["Inbox"]["Title"] == "Room change"
    assert Notification.objects.count() == 0  # nothing written before the confirmation


@pytest.mark.django_db
def test_it_sends_on_confirmation_through_the_service_and_records_it(client, staff_user, django_capture_on_commit_callbacks):
    mine, _, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(COMPOSE, compose_form(mine, stage="confirm"))

    notification = Notification.objects.get()
    assert response.status_code == 302
    assert response.url == f"/admin/notifications/notification/{notification.pk}/change/"
    assert notification.sender == staff_user
    assert notification.audience == {"cohorts": ["cs101"]}
    assert notification.channels == ["email", "inbox"]
    assert list(notification.cohorts.all()) == [mine]
    assert len(callbacks) == 1  # the fan-out is handed to the workers
    assert LogEntry.objects.filter(object_id=str(notification.pk), action_flag=ADDITION, user=staff_user).exists()

    again = client.post(COMPOSE, compose_form(mine, stage="confirm"))  # the same form submitted twice
    assert again.status_code == 302 and Notification.objects.count() == 1
    edited = client.post(COMPOSE, compose_form(mine, stage="confirm", title="Other"))  # back, edit, resend
    assert "already sent with other content" in str(edited.context["form"].non_field_errors())
    assert Notification.objects.count() == 1


@pytest.mark.django_db
def test_it_refuses_staff_a_cohort_or_users_outside_their_scope(client, staff_user):
    mine, theirs, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    other_cohort = client.post(COMPOSE, compose_form(mine, cohorts=[theirs.pk]))
    assert other_cohort.status_code == 200
    assert "cohorts" in other_cohort.context["form"].errors

    outsider = client.post(COMPOSE, compose_form(mine, cohorts=[], users="s1000003", stage="confirm"))
    assert outsider.status_code == 200
    assert "not in a cohort you manage" in str(outsider.context["form"].non_field_errors())

    everyone = client.post(COMPOSE, compose_form(mine, cohorts=[], everyone="on", stage="confirm"))
    assert "Choose an audience" in str(everyone.context["form"].non_field_errors())
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_it_shows_the_services_errors_on_the_form(client, admin_user):
    client.force_login(admin_user)

    response = client.post(COMPOSE, {"notifier": "security", "category": "security", "priority": "urgent",
                                     "title": "Evacuate", "body": "Now.", "everyone": "on", "token": "t",
                                     "stage": "confirm"})

    assert response.status_code == 200
    assert "severity" in response.context["form"].errors
    assert Notification.objects.count() == 0


def confirm(client, form):
    response = client.post(COMPOSE, form)
    assert response.status_code == 200
    return response, [t.name for t in response.templates]


@pytest.mark.django_db
def test_it_refuses_a_security_alert_without_severity_at_the_confirmation_step(client, admin_user):
    mine, _, _ = two_cohorts(admin_user)
    client.force_login(admin_user)

    response, templates = confirm(client, compose_form(mine, notifier="security", category="security",
                                                       channels=["inbox"], title="Evacuate"))

    assert "admin/notifications/notification/confirm.html" not in templates
    assert response.context["form"].errors["severity"] == [
        "Choose a severity: a security or emergency alert must carry one."]
    with_severity, templates = confirm(client, compose_form(mine, notifier="security", category="security",
                                                            channels=["inbox"], title="Evacuate", severity="high"))
    assert "admin/notifications/notification/confirm.html" in templates


@pytest.mark.django_db
def test_it_names_an_unknown_username_instead_of_dropping_it(client, admin_user):
    two_cohorts(admin_user)
    client.force_login(admin_user)

    response, templates = confirm(client, compose_form(None, users="s1000001 nobody99"))

    assert "admin/notifications/notification/confirm.html" not in templates
    assert "Unknown user(s): nobody99." in str(response.context["form"].non_field_errors())
    assert "It will reach" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("title", ["Room change\nBcc: x@y", "Room\rchange", "Room\tchange", "Room \x1b[2J",
                                   "Room\x85change"])
def test_it_refuses_control_characters_in_the_title_on_the_form(client, staff_user, title):
    mine, _, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    for stage in ({}, {"stage": "confirm"}):
        response, templates = confirm(client, compose_form(mine, title=title, **stage))
        assert "admin/notifications/notification/confirm.html" not in templates
        assert "title" in response.context["form"].errors
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_it_lists_every_problem_at_once(client, admin_user):
    two_cohorts(admin_user)
    client.force_login(admin_user)

    response, _ = confirm(client, compose_form(None, notifier="security", category="grade", channels=["sms"],
                                               title="Alert\nnow", users="ghost1 ghost2"))

    errors = response.context["form"].errors
    assert {"category", "title", "severity"} <= set(errors)
    assert "Unknown user(s): ghost1, ghost2." in str(response.context["form"].non_field_errors())


@pytest.mark.django_db
def test_it_lets_an_admin_send_to_a_role(client, admin_user):
    two_cohorts(admin_user)
    client.force_login(admin_user)

    response = client.post(COMPOSE, compose_form(None, cohorts=[], roles=["User"]))

    assert response.context["plan"]["people"] == 4


# --- compose for people: time zone, translations, counts and reasons, the send refused -----------------

@pytest.mark.django_db
@pytest.mark.parametrize("typed, stored", [("2027-01-15T09:00", "2027-01-15 08:00:00+00:00"),  # winter: UTC+1
                                           ("2027-07-15T09:00", "2027-07-15 07:00:00+00:00")])  # summer: UTC+2
def test_it_reads_dates_in_the_senders_time_zone_and_says_so(client, staff_user, typed, stored):
    mine, _, _ = two_cohorts(staff_user)
    staff_user.timezone = "Europe/Paris"
    staff_user.save(update_fields=["timezone"])
    client.force_login(staff_user)

    form_page = client.get(COMPOSE).content.decode()
    confirmation = client.post(COMPOSE, compose_form(mine, scheduled_for=typed, deadline=typed)).content.decode()
    response = client.post(COMPOSE, compose_form(mine, scheduled_for=typed, deadline=typed, stage="confirm"))

    assert "Send at (your time, Europe/Paris)" in form_page
    assert ", 9 a.m. (Europe/Paris time)." in confirmation  # what was typed, said back in the sender's zone
    assert response.status_code == 302
    notification = Notification.objects.get()
    assert str(notification.scheduled_for) == stored and str(notification.deadline) == stored
    assert notification.status == Notification.Status.SCHEDULED


@pytest.mark.django_db
def test_it_stores_the_french_version_and_previews_each_language(client, staff_user):
    mine, _, _ = two_cohorts(staff_user)
    User.objects.filter(username="s1000002").update(language="fr", first_name="Léa")
    client.force_login(staff_user)
    french = {"title_fr": "Changement de salle", "body_fr": "Le cours de demain a lieu en B12."}

    confirmation = client.post(COMPOSE, compose_form(mine, **french))
    sent = client.post(COMPOSE, compose_form(mine, stage="confirm", **french))

    english, in_french = confirmation.context["previews"]
    assert (english["language"], in_french["language"]) == ("en", "fr")
    assert dict(dict(in_french["channels"])["Email"])["Subject"] == "Changement de salle"
    assert in_french["sample"].username == "s1000002"
    assert dict(dict(english["channels"])["Email"])["Subject"] == "Room change"
    assert sent.status_code == 302
    assert Notification.objects.get().translations == {"fr": {"title": "Changement de salle",
                                                               "body": "Le cours de demain a lieu en B12."}}


@pytest.mark.django_db
@pytest.mark.parametrize("french, field, problem", [
    ({"title_fr": "Salle\nBcc: x@y", "body_fr": "B12"}, "title_fr", "line break"),
    ({"title_fr": "Changement de salle"}, "body_fr", "A body is required"),
    ({"body_fr": "B12 demain."}, "title_fr", "A title is required"),
])
def test_it_refuses_a_french_version_on_the_form_as_the_service_does(client, staff_user, french, field, problem):
    mine, _, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    for stage in ({}, {"stage": "confirm"}):
        response, templates = confirm(client, compose_form(mine, **french, **stage))
        assert "admin/notifications/notification/confirm.html" not in templates
        assert problem in " ".join(response.context["form"].errors[field])
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_it_says_per_channel_who_will_not_receive_it_and_why_with_a_link_to_the_defaults(client, admin_user):
    mine, _, _ = two_cohorts(admin_user)
    client.force_login(admin_user)

    response = client.post(COMPOSE, compose_form(mine, channels=["sms", "inbox"]))

    rows = {row["channel"]: row for row in response.context["rows"]}
    assert (rows["sms"]["receive"], rows["sms"]["not_received"]) == (0, 2)
    assert [(line["code"], line["people"]) for line in rows["sms"]["reasons"]] == [("default_off", 2)]
    assert (rows["inbox"]["receive"], rows["inbox"]["not_received"]) == (2, 0)
    page = response.content.decode()
    assert "0 of 2" in page and "off by default for “Course announcement” on SMS" in page
    assert "/admin/notifications/categorydefault/add/?category=announcement&amp;channel=sms" in page  # built in
    CategoryDefault.objects.create(category="announcement", channel="sms", enabled=False)
    again = client.post(COMPOSE, compose_form(mine, channels=["sms", "inbox"])).content.decode()
    row = CategoryDefault.objects.get()
    assert f"/admin/notifications/categorydefault/{row.pk}/change/" in again
    assert "No preview for SMS: nobody will receive it there." in page
    assert [label for label, _ in response.context["previews"][0]["channels"]] == ["Inbox"]
    assert 'value="Send now"' in page  # the inbox reaches both


@pytest.mark.django_db
def test_it_offers_no_send_now_and_refuses_a_send_that_nobody_would_receive(client, staff_user):
    mine, _, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    confirmation = client.post(COMPOSE, compose_form(mine, channels=["sms"]))
    forced = client.post(COMPOSE, compose_form(mine, channels=["sms"], stage="confirm"))

    page = confirmation.content.decode()
    assert confirmation.context["receiving"] == 0
    assert "Send now" not in page and "Nobody would receive this notification" in page
    assert "an administrator can change it in Category defaults" in page  # Staff may not change them: no link
    assert "/admin/notifications/categorydefault/" not in page
    assert forced.status_code == 200
    assert "Nobody would receive this notification" in str(forced.context["form"].non_field_errors())
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_it_counts_the_sms_as_it_will_be_sent_for_each_language(client, admin_user):
    mine, _, _ = two_cohorts(admin_user)
    mine.members.update(phone="+33612345678", phone_verified_at=timezone.now())
    client.force_login(admin_user)
    body_fr = "Le cours de demain a lieu en salle B12, reçu ?"  # ç is not GSM-7: UCS-2

    response = client.post(COMPOSE, compose_form(mine, notifier="security", category="security", severity="high",
                                                 channels=["sms", "inbox"], title_fr="Salle", body_fr=body_fr))

    english, french = response.context["previews"]
    for version, encoding in ((english, "GSM-7"), (french, "UCS-2")):
        text = dict(dict(version["channels"])["SMS"])["Text"]
        assert version["sms"] == {**sms_count(text), "cut": False}
        assert version["sms"]["encoding"] == encoding
    assert body_fr in dict(dict(french["channels"])["SMS"])["Text"]
    page = response.content.decode()
    assert f"SMS: {french['sms']['characters']} characters, {french['sms']['segments']} segment(s), encoding UCS-2." \
        in page


@pytest.mark.django_db
def test_the_success_message_names_the_cohorts_readably(client, staff_user):
    mine, _, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    response = client.post(COMPOSE, compose_form(mine, stage="confirm"), follow=True)

    shown = [str(m) for m in response.context["messages"]]
    assert shown == ["“Room change” accepted for cohort Computer Science 101 (cs101)."]


@pytest.mark.django_db
def test_start_again_returns_to_the_form_with_everything_typed(client, staff_user):
    mine, _, _ = two_cohorts(staff_user)
    staff_user.timezone = "Europe/Paris"
    staff_user.save(update_fields=["timezone"])
    client.force_login(staff_user)
    typed = compose_form(mine, title_fr="Changement de salle", body_fr="B12 demain.", scheduled_for="2027-01-15T09:00",
                         requires_ack="on", users="s1000001", stage="confirm", _edit="1")

    response = client.post(COMPOSE, typed)

    assert "admin/notifications/notification/compose.html" in [t.name for t in response.templates]
    page = response.content.decode()
    for value in ('value="Room change"', "Tomorrow&#x27;s lecture moves to B12.", 'value="Changement de salle"',
                  "B12 demain.", 'value="2027-01-15T09:00"', 'value="tok-1"', "s1000001</textarea>"):
        assert value in page
    form = response.context["form"]
    assert form["requires_ack"].value() and [str(v) for v in form["cohorts"].value()] == [str(mine.pk)]
    assert Notification.objects.count() == 0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_each_recipient_gets_the_version_of_their_language_through_real_workers(client, staff_user, broker, smtp_peer,
                                                                              workers):
    mine, _, _ = two_cohorts(staff_user)
    english, french = User.objects.get(username="s1000001"), User.objects.get(username="s1000002")
    french.language, french.first_name = "fr", "Léa"
    french.save(update_fields=["language", "first_name"])
    workers()
    client.force_login(staff_user)

    response = client.post(COMPOSE, compose_form(mine, stage="confirm", title_fr="Changement de salle",
                                                 body_fr="Le cours de demain a lieu en B12."))

    assert response.status_code == 302
    wait_until(lambda: len(smtp_peer.messages) >= 2, timeout=60, message="two emails")
    mail = {m["To"]: (m["Subject"], m.get_body(("plain",)).get_content()) for m in smtp_peer.messages}
    assert mail[french.email][0] == "Changement de salle"
    assert "Bonjour Léa" in mail[french.email][1] and "Le cours de demain a lieu en B12." in mail[french.email][1]
    assert mail[english.email][0] == "Room change"
    assert "Tomorrow's lecture moves to B12." in mail[english.email][1]
    wait_until(lambda: InboxMessage.objects.count() == 2, message="two inbox messages")
    inbox = dict(InboxMessage.objects.values_list("recipient__username", "title"))
    assert inbox == {"s1000001": "Room change", "s1000002": "Changement de salle"}


@pytest.mark.django_db
def test_the_daily_digest_carries_each_readers_version_and_english_when_none(smtp_peer, broker):
    morning, evening = (dt.datetime(2026, 1, 15, hour, 0, tzinfo=dt.timezone.utc) for hour in (8, 17))
    readers = [make_user(name, language=language, timezone="Europe/Paris", digest_hour=18)
               for name, language in (("s1", "en"), ("s2", "fr"))]
    for reader in readers:
        preferences_save(reader, digests={"announcement": True})
    for title, translations in (("Club fair", {"fr": {"title": "Forum des clubs", "body": "Jeudi."}}),
                                ("Library hours", {})):
        notification, _ = notification_send(sender=None, notifier="academic", category="announcement",
                                            priority="low", title=title, body="Thursday.", channels=["email"],
                                            translations=translations, audience={"users": ["s1", "s2"]})
        notification_fan_out(notification.pk, now=morning)

    digests_send([reader.pk for reader in readers], now=evening)

    text = {m["To"]: m.get_body(("plain",)).get_content() for m in smtp_peer.messages}
    assert "Club fair" in text[readers[0].email] and "Forum des clubs" not in text[readers[0].email]
    assert "Forum des clubs" in text[readers[1].email] and "Jeudi." in text[readers[1].email]
    assert "Library hours" in text[readers[1].email]  # no French version: the English one


# --- the same French version through the API and send_batch, validated the same way ------------------

def api_notification(**fields):
    return {"notifier": "academic", "category": "announcement", "title": "Room change", "body": "B12 tomorrow.",
            "audience": {"cohorts": ["cs101"]}, "channels": ["inbox"], **fields}


@pytest.mark.django_db
def test_the_api_accepts_a_french_version_and_refuses_it_as_the_console_does(staff_user):
    two_cohorts(staff_user)
    api = jwt_client(staff_user)
    french = {"fr": {"title": "Changement de salle", "body": "B12 demain."}}

    accepted = api.post(f"{API}notifications/", api_notification(translations=french), format="json")
    line_break = api.post(f"{API}notifications/", api_notification(
        translations={"fr": {"title": "Salle\nBcc: x@y", "body": "B12"}}), format="json")
    half = api.post(f"{API}notifications/", api_notification(translations={"fr": {"title": "Salle"}}), format="json")
    unknown = api.post(f"{API}notifications/", api_notification(translations={"de": {"title": "Raum", "body": "B12"}}),
                       format="json")

    assert accepted.status_code == 201, accepted.json()
    assert accepted.json()["translations"] == french
    assert Notification.objects.get().translations == french
    assert line_break.status_code == 400 and "line break" in line_break.json()["errors"]["translations.fr.title"][0]
    assert half.status_code == 400 and "A body is required" in half.json()["errors"]["translations.fr.body"][0]
    assert unknown.status_code == 400 and "No translation in 'de'" in unknown.json()["errors"]["translations"][0]
    assert Notification.objects.count() == 1


@pytest.mark.django_db
def test_send_batch_accepts_a_french_version_and_refuses_it_as_the_console_does(staff_user, tmp_path):
    two_cohorts(staff_user)
    args = ["--cohort", "cs101", "--channels", "inbox", "--title", "Room change", "--body", "B12 tomorrow."]

    call_command("send_batch", *args, "--title-fr", "Changement de salle", "--body-fr", "B12 demain.",
                 stdout=StringIO())
    with pytest.raises(CommandError, match="--title-fr: A title is one line of text: it contains a line break"):
        call_command("send_batch", *args, "--title-fr", "Salle\nBcc: x@y", "--body-fr", "B12", stdout=StringIO())
    with pytest.raises(CommandError, match="--body-fr: A body is required"):
        call_command("send_batch", *args, "--title-fr", "Salle", stdout=StringIO())
    csv = tmp_path / "rows.csv"
    csv.write_text("username,room\ns1000001,B12\n")
    call_command("send_batch", str(csv), "--channels", "inbox", "--title", "Room {{ room }}", "--body", "See you.",
                 "--title-fr", "Salle {{ room }}", "--body-fr", "À demain.", stdout=StringIO())
    with pytest.raises(CommandError, match="--title-fr: Template error"):
        call_command("send_batch", str(csv), "--channels", "inbox", "--title", "Room", "--body", "See you.",
                     "--title-fr", "Salle {% url 'x' %}", "--body-fr", "À demain.", stdout=StringIO())

    first, batch = Notification.objects.order_by("pk")
    assert first.translations == {"fr": {"title": "Changement de salle", "body": "B12 demain."}}
    assert batch.translations == {"fr": {"title": "Salle {{ room }}", "body": "À demain."}}
