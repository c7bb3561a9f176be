"""Two-way SMS check-in: an alert asks "Reply 1 if you are safe, 2 if you need help."; the answers come back
through Twilio's signed inbound webhook, posted to the live server by a Twilio-like peer, and become the roll call.

The alerts go out through the real twilio client to a local HTTP peer standing in for Twilio's API; the
engine's tasks (fan-out, delivery) run as a worker runs them (tests.delivery_helpers.run_queued_tasks).
"""

import uuid
from datetime import timedelta

import pytest
import requests
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from twilio.request_validator import RequestValidator

from accounts.data_rights import user_data_export, user_erase
from accounts.models import Role
from notifications.engine.escalation import escalations_run
from notifications.models import CategoryDefault, Delivery, InboxMessage, LedgerEntry, Notification, SmsReply
from notifications.services import notification_resend_unacknowledged, notification_send
from notifications.services.checkin import sms_reply_kind

from .api_support import jwt_client
from .browser import assert_accessible, english_left_on_french_page, sign_in, with_axe
from .conftest import make_user
from .delivery_helpers import closed_breakers, run_queued_tasks  # noqa: F401
from .delivery_helpers import students as many_students
from .peers import wait_until

# The tasks run here, taken from the ORM queue (run_queued_tasks): the ORM broker, whatever the run uses.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("closed_breakers", "broker")]

TOKEN = "twilio-test-auth-token"
SITE = "https://notify.example.edu"
OUR_NUMBER = "+15005550006"
INBOUND = "/webhooks/twilio/inbound/"
PROMPT = "Reply 1 if you are safe, 2 if you need help."


class TwilioPhones:
    """Twilio's side of the text messages people send us: a signed inbound webhook per message, posted to
    the live server as Twilio posts it (form fields, X-Twilio-Signature over SITE_URL + path)."""

    def __init__(self, server_url):
        self.server_url = server_url

    def text(self, from_number, body, *, sid=None, signed=True, token=TOKEN, path=INBOUND):
        params = {"MessageSid": sid or "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": from_number,
                  "To": OUR_NUMBER, "Body": body, "NumMedia": "0", "NumSegments": "1"}
        headers = {"X-Twilio-Signature": RequestValidator(token).compute_signature(SITE + path, params)} if signed \
            else {}
        response = requests.post(self.server_url + path, data=params, headers=headers, timeout=30)
        response.sid = params["MessageSid"]
        return response


@pytest.fixture
def twilio(http_peer, settings):
    """Twilio's REST API, standing in on 127.0.0.1: it takes every SMS we send."""
    peer = http_peer(lambda request: (201, {}, {"sid": f"SM{len(peer.requests):032d}", "status": "queued"}))
    settings.TWILIO_API_BASE = peer.url
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_FROM_NUMBER = OUR_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.SITE_URL = SITE
    settings.EMERGENCY_TWO_PERSON_RULE = False  # not under test here: the alerts go at once
    return peer


@pytest.fixture
def phones(live_server, twilio):
    return TwilioPhones(live_server.url)


@pytest.fixture
def people(db):
    now = timezone.now()

    def person(username, phone, **fields):
        return make_user(username, phone=phone, phone_verified_at=now, **fields)

    return {
        "ada": person("s7000001", "+447911123401", first_name="Ada", last_name="Lovelace"),
        "leo": person("s7000002", "+33612345678", first_name="Léo", last_name="Martin", language="fr"),
        "max": person("s7000003", "+447911123403", first_name="Max", last_name="Planck"),
        "operator": person("o7000001", "+447911123499", role=Role.ON_DUTY, first_name="Olga", last_name="Duty",
                           email="duty@example.edu"),
    }


def students(people):
    return [people["ada"], people["leo"], people["max"]]


def alert(people, on_commit, *, checkin=True, title="Gas leak", **fields):
    """A security alert to the three students on SMS and inbox, fanned out and sent as the workers would."""
    fields.setdefault("channels", ["sms", "inbox"])
    notification, _ = notification_send(
        sender=None, notifier="security", title=title, body="Leave building C now.", checkin=checkin,
        data={"severity": "critical"}, audience={"users": [u.username for u in students(people)]}, **fields)
    run_queued_tasks(on_commit)
    notification.refresh_from_db()
    return notification


def acknowledged(notification, user):
    return InboxMessage.objects.filter(notification=notification, recipient=user,
                                       acknowledged_at__isnull=False).exists()


def test_it_asks_for_the_check_in_at_the_end_of_the_sms_in_the_recipients_language(
        people, twilio, django_capture_on_commit_callbacks, settings):
    settings.SMS_MAX_SEGMENTS = 1
    notification = alert(people, django_capture_on_commit_callbacks, title="Gas leak " + "now " * 35)

    bodies = {request["form"]["To"]: request["form"]["Body"] for request in twilio.requests}
    assert set(bodies) == {"+447911123401", "+33612345678", "+447911123403"}
    # Cut to one segment, the question kept whole.
    assert bodies["+447911123401"].endswith("... " + PROMPT) and len(bodies["+447911123401"]) <= 160
    assert bodies["+33612345678"].endswith("Répondez 1 si vous êtes en sécurité, 2 si vous avez besoin d'aide.")
    inbox = InboxMessage.objects.get(notification=notification, recipient=people["ada"])
    assert inbox.body.endswith("or acknowledge.")


def test_it_records_each_answer_in_the_roll_call_acknowledges_and_ledgers_the_tally(
        people, phones, django_capture_on_commit_callbacks, admin_user):
    notification = alert(people, django_capture_on_commit_callbacks)

    safe = phones.text("+447911123401", "1")
    other = phones.text("+33 6 12 34 56 78", "Je suis chez moi")  # From normalised to E.164

    assert safe.status_code == 200 and safe.headers["Content-Type"] == "application/xml"
    assert "<Message>Thank you: we have recorded that you are safe.</Message>" in safe.text
    assert "votre réponse est enregistrée" in other.text
    replies = {r.recipient.username: r for r in SmsReply.objects.select_related("recipient")}
    assert (replies["s7000001"].kind, replies["s7000001"].notification_id) == ("safe", notification.pk)
    assert (replies["s7000002"].kind, replies["s7000002"].from_number) == ("other", "+33612345678")
    assert acknowledged(notification, people["ada"]) and acknowledged(notification, people["leo"])
    assert not acknowledged(notification, people["max"])

    roll = jwt_client(admin_user).get(f"/api/v1/notifications/{notification.pk}/roll-call/").json()
    assert roll["recipients"] == 3
    assert (roll["safe"]["count"], roll["other"]["count"], roll["need_help"]["count"], roll["no_answer"]["count"]) \
        == (1, 1, 0, 1)
    assert [p["username"] for p in roll["safe"]["people"]] == ["s7000001"]
    assert [p["username"] for p in roll["no_answer"]["people"]] == ["s7000003"]

    # A later answer replaces the earlier one; both are kept.
    phones.text("+33612345678", "Safe!")
    roll = jwt_client(admin_user).get(f"/api/v1/notifications/{notification.pk}/roll-call/").json()
    assert (roll["safe"]["count"], roll["other"]["count"], roll["no_answer"]["count"]) == (2, 0, 1)
    assert SmsReply.objects.filter(recipient=people["leo"]).count() == 2

    entries = list(LedgerEntry.objects.filter(notification_id=notification.pk, event="checkin").order_by("id"))
    assert [(e.data["safe"], e.data["other"], e.data["no_answer"], e.data["answer"]) for e in entries] == [
        (1, 0, 2, "safe"), (1, 1, 1, "other"), (2, 0, 1, "safe")]
    assert entries[0].data["person"] == people["ada"].pk and entries[0].data["reply_id"] == replies["s7000001"].pk
    assert "+44" not in str([e.data for e in entries]) and "+33" not in str([e.data for e in entries])
    assert LedgerEntry.verify_chain() is None


def test_a_need_help_answer_alerts_the_operators_on_duty_on_every_channel(
        people, phones, twilio, django_capture_on_commit_callbacks, admin_user):
    notification = alert(people, django_capture_on_commit_callbacks)
    sent_before = len(twilio.requests)

    response = phones.text("+447911123403", "Need help")

    assert "alerted the operators on duty" in response.text
    assert SmsReply.objects.get().kind == "need_help"
    on_duty = Notification.objects.get(notifier="on_duty")
    assert (on_duty.category, on_duty.priority, on_duty.sender, on_duty.incident) == ("security", "urgent", None, None)
    assert not LedgerEntry.objects.filter(notification_id=on_duty.pk).exists()  # not an emergency alert itself
    run_queued_tasks(django_capture_on_commit_callbacks)  # the engine's normal fan-out and delivery
    deliveries = {d.channel: d for d in Delivery.objects.filter(notification=on_duty)}
    assert {d.recipient_id for d in deliveries.values()} == {people["operator"].pk}
    assert (deliveries["sms"].status, deliveries["email"].status, deliveries["inbox"].status) == ("sent",) * 3
    assert deliveries["push"].status == "skipped"  # no browser subscribed
    (sms,) = twilio.requests[sent_before:]
    assert sms["form"]["To"] == "+447911123499"
    assert "Max Planck" in sms["form"]["Body"] and "+447911123403" in sms["form"]["Body"]
    assert "Gas leak" in sms["form"]["Body"]
    assert mail.outbox[-1].to == ["duty@example.edu"] and "Max Planck" in mail.outbox[-1].subject
    assert InboxMessage.objects.filter(notification=on_duty, recipient=people["operator"]).exists()

    roll = jwt_client(admin_user).get(f"/api/v1/notifications/{notification.pk}/roll-call/").json()
    assert roll["need_help"]["people"] == [{"id": people["max"].pk, "username": "s7000003", "name": "Max Planck",
                                            "phone": "+447911123403", "answer": "Need help",
                                            "answered_at": roll["need_help"]["people"][0]["answered_at"]}]


def test_an_answer_acknowledges_the_alert_so_their_escalation_stops(people, phones,
                                                                   django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks)

    phones.text("+447911123401", "ok")
    escalations_run(now=timezone.now() + timedelta(minutes=11))

    escalated = set(Delivery.objects.filter(notification=notification, escalation_level__gte=1)
                    .values_list("recipient_id", flat=True))
    assert escalated == {people["leo"].pk, people["max"].pk}


def test_an_answer_to_a_resend_counts_for_the_original_alert(people, phones, twilio, admin_user,
                                                             django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks)
    phones.text("+447911123401", "1")
    sent_before = len(twilio.requests)

    resend, count = notification_resend_unacknowledged(notification, by=admin_user)
    run_queued_tasks(django_capture_on_commit_callbacks)
    reply = phones.text("+447911123403", "2")

    assert count == 2 and resend.checkin
    assert {r["form"]["To"] for r in twilio.requests[sent_before:] if r["form"]["Body"].endswith(PROMPT)} == {
        "+447911123403"} and "operators on duty" in reply.text
    assert SmsReply.objects.get(recipient=people["max"]).notification_id == notification.pk
    assert acknowledged(notification, people["max"])
    roll = jwt_client(admin_user).get(f"/api/v1/notifications/{notification.pk}/roll-call/").json()
    assert (roll["safe"]["count"], roll["need_help"]["count"], roll["no_answer"]["count"]) == (1, 1, 1)


def test_the_bare_word_help_is_the_carrier_keyword_not_a_call_for_help(people, phones,
                                                                      django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks)

    response = phones.text("+447911123401", " HELP ")

    assert "Reply STOP" in response.text and "FlashNotify" in response.text
    reply = SmsReply.objects.get()
    assert (reply.kind, reply.notification, reply.recipient) == ("help", None, people["ada"])
    assert not acknowledged(notification, people["ada"])
    assert not Notification.objects.filter(notifier="on_duty").exists()

    assert "operators on duty" in phones.text("+447911123401", "Help!").text  # not the bare word: a call for help
    assert acknowledged(notification, people["ada"])


@pytest.mark.parametrize("body, kind", [
    ("STOP", "stop"), (" stop ", "stop"), ("Stop.", "stop"), ("STOP!", "stop"), ("'Unsubscribe'", "stop"),
    ("Start.", "start"), ("unstop!", "start"),
    ("HELP", "help"), ("Help!", "need_help"), ("help me", "need_help"),
    ("1.", "safe"), ("2 - stuck in B12", "need_help"), ("stop it now", "other"),
])
def test_an_opt_out_is_understood_however_it_is_punctuated_and_help_is_not(body, kind):
    assert sms_reply_kind(body) == kind


def test_stop_turns_sms_off_but_for_emergency_alerts_and_start_turns_it_back_on(
        people, phones, twilio, django_capture_on_commit_callbacks, client, admin_user):
    CategoryDefault.objects.create(category="announcement", channel="sms", enabled=True)
    ada = people["ada"]

    response = phones.text("+447911123401", "Stop")

    assert "no more text messages" in response.text and "START" in response.text
    ada.refresh_from_db()
    assert ada.sms_stopped_at is not None
    assert SmsReply.objects.get().kind == "stop"
    assert LogEntry.objects.filter(object_id=str(ada.pk), change_message__contains="Replied STOP").exists()
    client.force_login(admin_user)
    person_page = client.get(reverse("admin:person", args=[ada.pk])).content.decode()
    assert "replied STOP on" in person_page

    academic, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                    title="Room change", body="B12.", channels=["sms"],
                                    audience={"users": [ada.username]})
    run_queued_tasks(django_capture_on_commit_callbacks)
    sms = Delivery.objects.get(notification=academic, channel="sms")
    assert (sms.status, sms.reason) == ("skipped", Delivery.Reason.SMS_STOPPED)
    assert not [r for r in twilio.requests if r["form"]["To"] == "+447911123401"]

    alert(people, django_capture_on_commit_callbacks, checkin=False, title="Storm")
    assert [r for r in twilio.requests if r["form"]["To"] == "+447911123401"]  # the law allows emergency alerts
    drill = alert(people, django_capture_on_commit_callbacks, checkin=False, title="Drill", alert_status="exercise")
    assert Delivery.objects.get(notification=drill, recipient=ada, channel="sms").reason == (
        Delivery.Reason.SMS_STOPPED)  # not a drill

    response = phones.text("+447911123401", "START")

    assert "again" in response.text
    ada.refresh_from_db()
    assert ada.sms_stopped_at is None
    assert LogEntry.objects.filter(object_id=str(ada.pk), change_message__contains="Replied START").exists()
    again, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                 title="Room change", body="C3.", channels=["sms"], audience={"users": [ada.username]})
    run_queued_tasks(django_capture_on_commit_callbacks)
    assert Delivery.objects.get(notification=again, channel="sms").status == "sent"


@pytest.mark.parametrize("signed, token", [(False, TOKEN), (True, "another-token")])
def test_it_refuses_an_unsigned_or_badly_signed_inbound_message(people, phones, django_capture_on_commit_callbacks,
                                                                signed, token):
    notification = alert(people, django_capture_on_commit_callbacks)

    response = phones.text("+447911123401", "1", signed=signed, token=token)

    assert response.status_code == 403
    assert not SmsReply.objects.exists()
    assert not acknowledged(notification, people["ada"])


def test_an_unknown_number_or_no_matching_alert_is_recorded_unmatched_and_changes_nothing(
        people, phones, django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks, checkin=False)

    unknown = phones.text("+447911123555", "2")
    no_checkin = phones.text("+447911123401", "2")

    assert unknown.status_code == no_checkin.status_code == 200
    assert "<Message>" not in unknown.text and "<Message>" not in no_checkin.text
    replies = list(SmsReply.objects.order_by("pk"))
    assert [(r.from_number, r.recipient_id, r.notification_id, r.kind) for r in replies] == [
        ("+447911123555", None, None, "need_help"), ("+447911123401", people["ada"].pk, None, "need_help")]
    assert not InboxMessage.objects.filter(acknowledged_at__isnull=False).exists()
    assert not LedgerEntry.objects.filter(event="checkin").exists()
    assert not Notification.objects.filter(notifier="on_duty").exists()


def test_a_replayed_message_changes_nothing(people, phones, django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks)

    first = phones.text("+447911123403", "2", sid="SM" + "7" * 32)
    again = phones.text("+447911123403", "2", sid="SM" + "7" * 32)

    assert first.text == again.text and "operators on duty" in again.text
    assert SmsReply.objects.count() == 1
    assert LedgerEntry.objects.filter(notification_id=notification.pk, event="checkin").count() == 1
    assert Notification.objects.filter(notifier="on_duty").count() == 1


def test_what_someone_texted_is_in_their_export_and_goes_with_their_erasure(people, phones, admin_user,
                                                                           django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks)
    phones.text("+447911123401", "1, at home")
    phones.text("+447911123401", "STOP")

    people["ada"].refresh_from_db()
    export = user_data_export(user=people["ada"], by=admin_user)
    assert [(r["from"], r["body"], r["kind"]) for r in export["sms_replies"]] == [
        ("+447911123401", "1, at home", "safe"), ("+447911123401", "STOP", "stop")]
    assert export["phone_verification"]["sms_stopped_at"]
    ledger = export["compliance_ledger"]  # the ledger entry of their answer names them (by id), so it is theirs
    assert [(e["event"], e["notification"], e["details"]["answer"]) for e in ledger] == [
        ("checkin", notification.pk, "safe")]
    assert ledger[0]["details"]["person"] == people["ada"].pk
    assert "compliance_ledger" not in [k for k, v in user_data_export(user=people["max"], by=admin_user).items() if v]

    erased = user_erase(user=people["ada"], by=admin_user)
    assert erased["sms_replies"] == 2 and erased["ledger_entries_kept"] == 1
    assert list(SmsReply.objects.values_list("from_number", "body", "kind")) == [("", "", "stop"), ("", "", "safe")]
    roll = jwt_client(admin_user).get(f"/api/v1/notifications/{notification.pk}/roll-call/").json()
    assert roll["safe"]["count"] == 1  # the roll call stays true


def test_the_webhook_is_also_served_under_the_api(people, phones, django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks)

    response = phones.text("+447911123401", "1", path="/api/v1" + INBOUND)

    assert response.status_code == 200 and "safe" in response.text
    assert SmsReply.objects.get().notification_id == notification.pk


def test_the_watch_page_shows_the_roll_call_live_with_phone_numbers_for_those_who_need_help(
        people, phones, django_capture_on_commit_callbacks, client, admin_user):
    notification = alert(people, django_capture_on_commit_callbacks)
    client.force_login(admin_user)
    status_url = reverse("admin:notifications_notification_status", args=[notification.pk])

    page = client.get(reverse("admin:notifications_notification_change", args=[notification.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="roll-call"' in html and f'data-url="{status_url}"' in html
    assert page.context["status"]["roll_call"]["groups"][3]["count"] == 3  # no answer yet

    phones.text("+447911123403", "help me")
    phones.text("+447911123401", "1")
    status = client.get(status_url).json()["roll_call"]

    groups = {group["key"]: group for group in status["groups"]}
    assert [(p["name"], p["phone"]) for p in groups["need_help"]["people"]] == [("Max Planck", "+447911123403")]
    assert [p["name"] for p in groups["safe"]["people"]] == ["Ada Lovelace"]
    assert not groups["safe"]["people"][0]["phone"]  # phone numbers only for those who need help
    assert [p["name"] for p in groups["no_answer"]["people"]] == ["Léo Martin"]
    assert "1 safe, 1 need help" in status["sentence"]
    html = client.get(reverse("admin:notifications_notification_change", args=[notification.pk])).content.decode()
    assert "+447911123403" in html and "+447911123401" not in html


def test_the_roll_call_has_the_visibility_of_its_notification(people, django_capture_on_commit_callbacks,
                                                             staff_user, twilio):
    notification = alert(people, django_capture_on_commit_callbacks)

    assert jwt_client(staff_user).get(f"/api/v1/notifications/{notification.pk}/roll-call/").status_code == 404
    assert jwt_client(people["ada"]).get(f"/api/v1/notifications/{notification.pk}/roll-call/").status_code == 403


def test_only_an_emergency_alert_on_sms_can_ask_for_a_check_in(admin_user, twilio):
    client = jwt_client(admin_user)
    body = {"notifier": "academic", "title": "Quiz", "body": "Friday.", "audience": {"users": [admin_user.username]},
            "checkin": True}

    academic = client.post("/api/v1/notifications/", body, format="json")
    no_sms = client.post("/api/v1/notifications/", {**body, "notifier": "security", "channels": ["email", "inbox"],
                                                    "data": {"severity": "high"}}, format="json")
    fine = client.post("/api/v1/notifications/", {**body, "notifier": "security", "data": {"severity": "high"}},
                       format="json")

    assert academic.status_code == 400 and academic.json()["errors"]["checkin"] == [
        "Only an emergency alert can ask for a check-in."]
    assert no_sms.status_code == 400 and "SMS" in no_sms.json()["errors"]["checkin"][0]
    assert fine.status_code == 201 and Notification.objects.get(pk=fine.json()["id"]).checkin



def test_the_console_compose_form_asks_for_a_check_in(people, twilio, client, admin_user):
    client.force_login(admin_user)
    form = {"notifier": "security", "category": "security", "priority": "urgent", "severity": "critical",
            "channels": ["sms", "inbox"], "title": "Gas leak", "body": "Leave building C now.",
            "users": "s7000001 s7000002", "token": "tok-checkin", "checkin": "on"}

    confirm = client.post("/admin/notifications/notification/add/", form)

    assert "admin/notifications/notification/confirm.html" in [t.name for t in confirm.templates]
    html = confirm.content.decode()
    assert PROMPT in html and 'name="checkin" value="True"' in html
    sent = client.post("/admin/notifications/notification/add/", {**form, "checkin": "True", "stage": "confirm"})
    assert sent.status_code == 302
    assert Notification.objects.get(title="Gas leak").checkin

    refused = client.post("/admin/notifications/notification/add/",
                          {**form, "notifier": "academic", "category": "announcement", "severity": "",
                           "token": "tok-2"})
    assert refused.context["form"].errors["checkin"] == ["Only an emergency alert can ask for a check-in."]


@pytest.mark.browser
def test_the_roll_call_refreshes_live_in_the_browser_in_french(people, phones, page, admin_user,
                                                               django_capture_on_commit_callbacks):
    from playwright.sync_api import expect

    notification = alert(people, django_capture_on_commit_callbacks)
    admin_user.language = "fr"
    admin_user.save(update_fields=["language"])
    with_axe(page)
    sign_in(page, admin_user.username, f"pw-{admin_user.username}")
    page.goto(f"/admin/notifications/notification/{notification.pk}/change/")
    expect(page.locator("#roll-call-no_answer-count")).to_have_text("3")

    phones.text("+447911123403", "2")  # while the page is open: it redraws itself
    phones.text("+33612345678", "1")

    expect(page.locator("#roll-call-need_help")).to_contain_text("Max Planck", timeout=20_000)
    expect(page.locator("#roll-call-need_help")).to_contain_text("+447911123403")
    expect(page.locator("#roll-call-safe")).to_contain_text("Léo Martin")
    expect(page.locator("#roll-call-no_answer-count")).to_have_text("1")
    assert "ayant besoin d’aide" in page.locator("#roll-call-sentence").inner_text()
    assert_accessible(page)
    data = {"Gas leak", "Ada Lovelace", "Max Planck", "Léo Martin", "s7000001", "s7000002", "s7000003",
            admin_user.username, "Leave building C now."}
    assert english_left_on_french_page(page, admin_user, data=data) == []


@pytest.mark.worker
@pytest.mark.slow
def test_an_exercise_with_check_in_to_200_students_through_real_workers(people, phones, twilio, broker, smtp_peer,
                                                                        workers, admin_user):
    crowd = many_students("s8", 200, phone_verified_at=timezone.now())
    for n, student in enumerate(crowd):
        student.phone = f"+4479111{n:05d}"
    User = type(crowd[0])
    User.objects.bulk_update(crowd, ["phone"])
    notification, _ = notification_send(
        sender=admin_user, notifier="security", title="Shelter in place", body="Stay inside.", checkin=True,
        alert_status="exercise", channels=["sms", "inbox"], data={"severity": "high"},
        audience={"users": [u.username for u in crowd]})
    workers(TWILIO_API_BASE=twilio.url, TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_FROM_NUMBER=OUR_NUMBER, SITE_URL=SITE)

    wait_until(lambda: len(twilio.requests) >= 200, timeout=120, message="200 text messages")
    wait_until(lambda: InboxMessage.objects.filter(notification=notification).count() == 200, timeout=60,
               message="200 inbox messages")
    assert all(r["form"]["Body"].endswith(PROMPT) for r in twilio.requests)
    answers = {0: "1", 1: "safe", 2: "OK", 3: "2", 4: "need help", 5: "I am at the library", 6: "STOP"}
    for n, body in answers.items():
        assert phones.text(f"+4479111{n:05d}", body).status_code == 200

    roll = jwt_client(admin_user).get(f"/api/v1/notifications/{notification.pk}/roll-call/").json()
    assert (roll["recipients"], roll["safe"]["count"], roll["need_help"]["count"], roll["other"]["count"],
            roll["no_answer"]["count"]) == (200, 3, 2, 1, 194)
    assert sorted(p["phone"] for p in roll["need_help"]["people"]) == ["+447911100003", "+447911100004"]
    assert User.objects.get(pk=crowd[6].pk).sms_stopped_at is not None
    assert InboxMessage.objects.filter(notification=notification, acknowledged_at__isnull=False).count() == 6
    tallies = LedgerEntry.objects.filter(notification_id=notification.pk, event="checkin").order_by("id")
    assert [e.data["no_answer"] for e in tallies] == [199, 198, 197, 196, 195, 194]
    # Two "need help": two alerts to the operator on duty, on SMS, email and inbox, sent by the workers.
    on_duty = Notification.objects.filter(notifier="on_duty")
    wait_until(lambda: Delivery.objects.filter(notification__in=on_duty, status="sent").count() == 6, timeout=60,
               message="the on-duty alerts sent")
    assert {r["form"]["To"] for r in twilio.requests[200:]} == {"+447911123499"}
    assert len(smtp_peer.messages) == 2


def test_the_console_lists_the_text_messages_received_read_only_for_those_who_may_see_them(
        people, client, admin_user, django_capture_on_commit_callbacks):
    notification = alert(people, django_capture_on_commit_callbacks)
    SmsReply.objects.create(message_sid="SM" + "1" * 32, from_number="+447911123401", body="2 stuck in B12",
                            kind="need_help", notification=notification, recipient=people["ada"])
    SmsReply.objects.create(message_sid="SM" + "2" * 32, from_number="+447911123555", body="who is this?",
                            kind="other")
    operator = make_user("o7000002", role=Role.STAFF, is_staff=True, first_name="Omar", last_name="Duty")
    operator.groups.add(Group.objects.get(name=Role.ON_DUTY))
    url = reverse("admin:notifications_smsreply_changelist")

    client.force_login(operator)
    page = client.get(url).content.decode()
    assert "2 stuck in B12" in page and "Ada Lovelace" in page and f"#{notification.pk}" in page
    assert "who is this?" in page and "unknown number" in page
    unmatched = client.get(url, {"matched": "no"}).content.decode()
    assert "who is this?" in unmatched and "2 stuck in B12" not in unmatched
    reply = SmsReply.objects.get(kind="other")
    assert client.post(reverse("admin:notifications_smsreply_change", args=[reply.pk]), {"body": "x"}).status_code == 403
    assert client.post(reverse("admin:notifications_smsreply_delete", args=[reply.pk]), {"post": "yes"}).status_code == 403
    assert SmsReply.objects.get(pk=reply.pk).body == "who is this?"

    client.force_login(admin_user)
    assert client.get(url).status_code == 200
    client.force_login(make_user("t7000009", role=Role.STAFF, is_staff=True))
    assert client.get(url).status_code == 403  # staff without the role
