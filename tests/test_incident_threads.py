"""Incident threads: updates and the all-clear of an emergency alert, through the service, the API, the Watch
page and the inbox; the all-clear closing the incident and stopping its escalations and reminders."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from accounts.models import Cohort, Role
from channels_app.models import PushSubscription
from notifications.engine import deliveries_send, notification_fan_out
from notifications.engine.escalation import escalations_run
from notifications.models import Delivery, InboxMessage, Incident, LedgerEntry, Notification
from notifications.services import notification_send
from notifications.services.incidents import FollowUpRefused, incident_follow_up

from .api_support import API, jwt_client, key_client
from .conftest import make_user
from .delivery_helpers import fan_out_and_send
from .peers import wait_until

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def one_person_rule(settings):
    """These tests are about threads: a free-text alert goes at once (the two-person rule has tests of its own)."""
    settings.EMERGENCY_TWO_PERSON_RULE = False


@pytest.fixture
def twilio(http_peer, settings):
    """An HTTP server standing in for Twilio's API."""
    peer = http_peer(lambda request: (201, {}, {"sid": f"SM{len(peer.requests):032d}", "status": "queued"}))
    settings.TWILIO_API_BASE = peer.url
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = "test-token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    return peer


def emergency_manager(username="e5000001", **fields):
    """Staff with the Emergency role (notifications.send_emergency), managing the campus cohort."""
    user = make_user(username, role=Role.STAFF, is_staff=True, email=f"{username}@example.edu", **fields)
    user.groups.add(Group.objects.get(name=Role.EMERGENCY))
    return user


@pytest.fixture
def campus(db):
    manager = emergency_manager(first_name="Noor", last_name="Haddad")
    cohort = Cohort.objects.create(code="campus", name="Whole campus")
    cohort.managers.add(manager)
    people = []
    for n, language in enumerate(("en", "fr")):
        person = make_user(f"s90000{n}", phone=f"+3361234567{n}", phone_verified_at=T0, language=language)
        PushSubscription.objects.create(user=person, endpoint=f"https://push.example/{n}", p256dh="k", auth="a")
        people.append(person)
    cohort.members.add(*people)
    return {"manager": manager, "cohort": cohort, "people": people}


def alert(campus, **fields):
    fields.setdefault("channels", ["push", "sms", "inbox"])
    notification, _ = notification_send(
        sender=campus["manager"], notifier="security", title="Gas leak", body="Leave building C now.",
        translations={"fr": {"title": "Fuite de gaz", "body": "Quittez le bâtiment C."}},
        data={"severity": "critical"}, audience={"cohorts": ["campus"]}, **fields)
    return notification


def follow_up(original, campus, kind="update", **fields):
    fields.setdefault("title", "All clear" if kind == "all_clear" else "Update: building C")
    fields.setdefault("body", "You may return." if kind == "all_clear" else "Stay away from building C.")
    return incident_follow_up(original, sender=campus["manager"], kind=kind, **fields)[0]


def ledger(notification, event):
    return list(LedgerEntry.objects.filter(notification_id=notification.pk, event=event).order_by("id"))


# --- the service --------------------------------------------------------------------------------

def test_it_sends_an_update_to_the_originals_audience_and_channels_in_its_incident(campus):
    original = alert(campus, alert_status="exercise")

    update = follow_up(original, campus)

    assert update.incident_id == original.incident_id
    assert (update.thread_role, update.alert_status, update.notifier) == ("update", "exercise", "security")
    assert update.audience == original.audience and update.channels == original.channels
    assert update.data == {"severity": "critical"}
    assert update.status == Notification.Status.QUEUED
    [entry] = ledger(original, LedgerEntry.Event.UPDATE)
    assert entry.data["follow_up_id"] == update.pk and entry.data["title"] == "Update: building C"
    assert entry.data["sender"] == "e5000001" and entry.actor == "Noor Haddad (e5000001)"
    assert [e.event for e in LedgerEntry.objects.filter(notification_id=update.pk)] == ["drafted", "content", "sent"]
    assert Incident.objects.get(pk=original.incident_id).closed_at is None


def test_it_sends_a_follow_up_to_another_audience_when_given_one(campus):
    original = alert(campus)

    update = follow_up(original, campus, audience={"users": ["s900000"]}, channels=["inbox"])

    assert update.audience == {"users": ["s900000"]} and update.channels == ["inbox"]


def test_it_closes_the_incident_with_the_all_clear_and_refuses_what_follows(campus):
    original = alert(campus)
    update = follow_up(original, campus)

    all_clear = follow_up(update, campus, kind="all_clear")  # a follow-up of a follow-up is of the same thread

    incident = Incident.objects.get(pk=original.incident_id)
    assert incident.closed_at is not None
    assert all_clear.thread_role == "all_clear" and all_clear.incident_id == incident.pk
    [entry] = ledger(original, LedgerEntry.Event.ALL_CLEAR)
    assert entry.data["follow_up_id"] == all_clear.pk and entry.data["title"] == "All clear"
    for kind in ("update", "all_clear"):
        with pytest.raises(FollowUpRefused) as refused:
            follow_up(original, campus, kind=kind)
        assert refused.value.code == "incident_closed"
    assert Notification.objects.filter(incident=incident).count() == 3


def test_it_refuses_a_follow_up_of_a_notification_that_is_not_an_emergency_alert(campus):
    notice, _ = notification_send(sender=campus["manager"], notifier="academic", title="Room change", body="B12",
                                  audience={"cohorts": ["campus"]})

    with pytest.raises(FollowUpRefused) as refused:
        follow_up(notice, campus)

    assert refused.value.code == "not_an_alert"


def test_it_refuses_a_follow_up_from_someone_without_the_emergency_permission(campus):
    original = alert(campus)
    staff = make_user("t2000001", role=Role.STAFF, is_staff=True)
    campus["cohort"].managers.add(staff)

    with pytest.raises(PermissionDenied):
        incident_follow_up(original, sender=staff, kind="update", title="Update", body="Stay away.")
    with pytest.raises(Exception) as bad_kind:
        incident_follow_up(original, sender=campus["manager"], kind="alert", title="Update", body="Stay away.")

    assert bad_kind.value.message_dict["kind"]
    assert Notification.objects.count() == 1


# --- the engine: the all-clear stops escalations and reminders -----------------------------------

def sent_at(notification, now):
    notification_fan_out(notification.pk, now=now)
    deliveries_send(list(Delivery.objects.filter(notification=notification, status="queued")
                         .values_list("pk", flat=True)), now=now)


def test_it_stops_the_threads_pending_escalations_with_a_reason_and_escalates_nothing_more(campus, twilio):
    original = alert(campus, channels=["push", "sms", "email", "inbox"])
    sent_at(original, T0)  # push is not configured here: it fails, as an unreachable browser would
    assert escalations_run(now=T0 + dt.timedelta(minutes=10)) == {"escalated": 2}
    pending = Delivery.objects.filter(notification=original, escalation_level=1)
    assert set(pending.values_list("channel", "status")) == {("sms", "queued")}

    all_clear = follow_up(original, campus, kind="all_clear")

    assert set(pending.values_list("status", "reason")) == {("cancelled", "cancelled")}
    assert all(f"all clear sent (notification {all_clear.pk})" in d.reason_text for d in pending)
    assert ledger(original, LedgerEntry.Event.ALL_CLEAR)[0].data["escalations_cancelled"] == 2
    assert escalations_run(now=T0 + dt.timedelta(hours=2)) == {}  # nothing of a closed incident climbs on
    assert not Delivery.objects.filter(notification=original, escalation_level__gte=2).exists()
    original.refresh_from_db()
    assert original.is_final  # nothing was left to send: it finished


def test_it_still_escalates_an_open_incidents_alert(campus, twilio):
    original = alert(campus, channels=["push", "sms", "inbox"])
    sent_at(original, T0)
    follow_up(original, campus)  # an update does not close anything

    assert escalations_run(now=T0 + dt.timedelta(minutes=10))["escalated"] >= 2


def test_it_cancels_the_threads_scheduled_reminders_with_a_reason(campus):
    deadline = timezone.now() + dt.timedelta(days=1)
    original = alert(campus, deadline=deadline, reminder_offsets=[60, 120])
    reminders = Notification.objects.filter(parent=original)
    assert set(reminders.values_list("status", flat=True)) == {"scheduled"}

    all_clear = follow_up(original, campus, kind="all_clear")

    assert set(reminders.values_list("status", flat=True)) == {"cancelled"}
    for reminder in reminders:
        [entry] = ledger(reminder, LedgerEntry.Event.CANCELLED)
        assert entry.data == {"reason": f"all clear sent (notification {all_clear.pk}): the incident is closed",
                              "all_clear_id": all_clear.pk}
    assert sorted(ledger(original, LedgerEntry.Event.ALL_CLEAR)[0].data["reminders_cancelled"]) == sorted(
        reminders.values_list("pk", flat=True))


def test_it_closes_the_incident_when_an_all_clear_sent_by_another_door_starts_going_out(campus):
    """An all-clear that reaches the workers without the follow-up service (an incident template's, or one
    that waited for approval) closes its incident when its fan-out starts, once."""
    original = alert(campus)
    all_clear, _ = notification_send(
        sender=campus["manager"], notifier="security", title="All clear", body="You may return.",
        data={"severity": "critical"}, audience=original.audience, incident=original.incident,
        thread_role="all_clear")
    assert Incident.objects.get(pk=original.incident_id).closed_at is None

    notification_fan_out(all_clear.pk)
    notification_fan_out(all_clear.pk)

    assert Incident.objects.get(pk=original.incident_id).closed_at is not None
    assert [e.data["follow_up_id"] for e in ledger(original, LedgerEntry.Event.ALL_CLEAR)] == [all_clear.pk]


# --- the API ------------------------------------------------------------------------------------

def follow_ups_url(notification):
    return f"{API}notifications/{notification.pk}/follow-ups/"


def test_it_sends_follow_ups_through_the_api(campus):
    original = alert(campus)
    client = jwt_client(campus["manager"])

    response = client.post(follow_ups_url(original), {
        "kind": "update", "title": "Update: building C", "body": "Stay away from building C.",
        "translations": {"fr": {"title": "Mise à jour", "body": "Restez loin du bâtiment C."}}}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    update = Notification.objects.get(pk=body["id"])
    assert (update.thread_role, update.incident_id) == ("update", original.incident_id)
    assert body["title"] == "Update: building C" and body["audience"] == {"cohorts": ["campus"]}
    assert update.translations == {"fr": {"title": "Mise à jour", "body": "Restez loin du bâtiment C."}}

    response = client.post(follow_ups_url(original), {"kind": "all_clear", "title": "All clear",
                                                      "body": "You may return."}, format="json")
    assert response.status_code == 201
    assert Incident.objects.get(pk=original.incident_id).closed_at is not None

    response = client.post(follow_ups_url(original), {"kind": "update", "title": "Late", "body": "Late."},
                           format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "incident_closed"


def test_it_answers_400_by_field_for_a_bad_follow_up(campus):
    original = alert(campus)
    client = jwt_client(campus["manager"])

    response = client.post(follow_ups_url(original), {"kind": "retraction", "body": "x"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"kind", "title"}

    response = client.post(follow_ups_url(original), {
        "kind": "update", "title": "Update\nnow", "body": "Stay away.",
        "translations": {"fr": {"title": "Mise à jour"}}, "audience": {"cohorts": ["nowhere"]}}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"title", "translations.fr.body", "audience"}
    assert Notification.objects.count() == 1


def test_it_refuses_follow_ups_through_the_api_to_whoever_may_not_send_them(campus):
    original = alert(campus)
    staff = make_user("t2000001", role=Role.STAFF, is_staff=True)
    campus["cohort"].managers.add(staff)
    stranger = emergency_manager("e5000002")  # the permission (they see every alert), but not the campus cohort
    body = {"kind": "update", "title": "Update", "body": "Stay away."}

    assert jwt_client(staff).post(follow_ups_url(original), body, format="json").status_code == 403
    assert jwt_client(campus["people"][0]).post(follow_ups_url(original), body, format="json").status_code == 403
    assert jwt_client(stranger).post(follow_ups_url(original), body, format="json").status_code == 403
    key = key_client(campus["manager"], scopes=["read_deliveries"])
    assert key.post(follow_ups_url(original), body, format="json").status_code == 403
    assert Notification.objects.count() == 1
    key = key_client(campus["manager"], scopes=["send", "read_deliveries"])
    assert key.post(follow_ups_url(original), body, format="json").status_code == 201


def test_it_answers_409_for_a_follow_up_of_a_notification_that_is_not_an_alert(campus):
    notice, _ = notification_send(sender=campus["manager"], notifier="academic", title="Room change", body="B12",
                                  audience={"cohorts": ["campus"]})

    response = jwt_client(campus["manager"]).post(follow_ups_url(notice), {
        "kind": "update", "title": "Update", "body": "Stay away."}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "not_an_alert"


def test_it_documents_the_incident_endpoints_in_the_schema(campus):
    schema = jwt_client(campus["manager"]).get(f"{API}schema/", HTTP_ACCEPT="application/json").json()

    assert "post" in schema["paths"]["/api/v1/notifications/{notification_id}/follow-ups/"]
    assert "post" in schema["paths"]["/api/v1/notifications/{notification_id}/publish/"]
    inbox_item = schema["components"]["schemas"]["InboxMessage"]["properties"]
    assert {"incident", "thread_role"} <= set(inbox_item)
    assert not any(path.startswith("/cap/") for path in schema["paths"])


# --- the inbox: the whole thread ------------------------------------------------------------------

def delivered_thread(campus):
    original = alert(campus, channels=["inbox"])
    fan_out_and_send(original)
    update = follow_up(original, campus)
    fan_out_and_send(update)
    all_clear = follow_up(original, campus, kind="all_clear",
                          translations={"fr": {"title": "Fin de l'alerte", "body": "Vous pouvez revenir."}})
    fan_out_and_send(all_clear)
    return original, update, all_clear


def test_it_shows_a_student_the_whole_thread_of_an_incident_in_order(campus, client):
    original, update, all_clear = delivered_thread(campus)
    student = campus["people"][0]
    client.force_login(student)

    page = client.get(f"/inbox/{update.pk}/").content.decode()

    thread = page[page.index('id="thread"'):]
    positions = [thread.index(text) for text in ("Gas leak", "Update: building C", "All clear")]
    assert positions == sorted(positions)
    assert thread.count("<time datetime=") == 3
    assert f'href="/inbox/{original.pk}/"' in thread and f'href="/inbox/{all_clear.pk}/"' in thread
    assert 'aria-current="true"' in thread
    inbox = client.get("/inbox/").content.decode()
    assert "thread-update" in inbox and "thread-all_clear" in inbox


def test_it_shows_the_thread_in_the_readers_language_and_nothing_outside_an_incident(campus, client):
    delivered_thread(campus)
    french = campus["people"][1]
    client.force_login(french)
    message = InboxMessage.objects.get(recipient=french, notification__thread_role="alert")

    page = client.get(f"/inbox/{message.notification_id}/").content.decode()

    assert "Fuite de gaz" in page and "Fin de l&#x27;alerte" in page
    notice, _ = notification_send(sender=campus["manager"], notifier="academic", title="Room change", body="B12",
                                  channels=["inbox"], audience={"cohorts": ["campus"]})
    fan_out_and_send(notice)
    assert 'id="thread"' not in client.get(f"/inbox/{notice.pk}/").content.decode()


def test_it_gives_each_inbox_item_of_the_api_its_incident_and_place_in_the_thread(campus):
    original, update, all_clear = delivered_thread(campus)
    client = jwt_client(campus["people"][0])

    items = client.get(f"{API}me/inbox/").json()["results"]

    roles = {item["notification"]: (item["incident"], item["thread_role"]) for item in items}
    assert roles == {original.pk: (original.incident_id, "alert"), update.pk: (original.incident_id, "update"),
                     all_clear.pk: (original.incident_id, "all_clear")}
    one = client.get(f"{API}me/inbox/{items[0]['id']}/").json()
    assert (one["incident"], one["thread_role"]) == (original.incident_id, "all_clear")


# --- the Watch page -------------------------------------------------------------------------------

def watch_url(notification, part="change/"):
    return f"/admin/notifications/notification/{notification.pk}/{part}"


def test_it_shows_the_thread_on_the_watch_page_with_links_and_the_follow_up_forms(campus, client):
    original = alert(campus)
    update = follow_up(original, campus)
    client.force_login(campus["manager"])

    page = client.get(watch_url(update)).content.decode()

    assert 'id="incident"' in page and 'id="thread-table"' in page
    assert f'href="{watch_url(original)}"' in page
    assert 'id="follow-up-update"' in page and 'id="follow-up-all_clear"' in page
    assert 'id="cap-publish"' in page


def test_it_hides_the_follow_up_forms_from_staff_without_the_emergency_permission(campus, client):
    original = alert(campus)
    staff = make_user("t2000001", role=Role.STAFF, is_staff=True)
    campus["cohort"].managers.add(staff)
    client.force_login(staff)

    page = client.get(watch_url(original)).content.decode()

    assert 'id="thread-table"' in page
    assert 'id="follow-up-update"' not in page and 'id="cap-publish"' not in page
    response = client.post(watch_url(original, "follow-up/"), {"kind": "update", "update-title": "Update",
                                                                "update-body": "Stay away."})
    assert response.status_code == 403
    assert client.post(watch_url(original, "publish/"), {"public": "1"}).status_code == 403
    assert Notification.objects.count() == 1


def test_it_sends_an_update_and_the_all_clear_from_the_watch_page(campus, client):
    original = alert(campus)
    client.force_login(campus["manager"])

    response = client.post(watch_url(original, "follow-up/"), {
        "kind": "update", "update-title": "Update: building C", "update-body": "Stay away.",
        "update-title_fr": "Mise à jour", "update-body_fr": "Restez loin."})

    update = Notification.objects.get(thread_role="update")
    assert response.status_code == 302 and response["Location"] == watch_url(update)
    assert update.translations == {"fr": {"title": "Mise à jour", "body": "Restez loin."}}

    client.post(watch_url(original, "follow-up/"), {"kind": "all_clear", "all_clear-title": "All clear",
                                                    "all_clear-body": "You may return."})

    assert Incident.objects.get(pk=original.incident_id).closed_at is not None
    page = client.get(watch_url(original)).content.decode()
    assert 'id="follow-up-update"' not in page  # closed: nothing more follows
    response = client.post(watch_url(original, "follow-up/"), {"kind": "update", "update-title": "Late",
                                                                "update-body": "Late."}, follow=True)
    assert Notification.objects.filter(incident_id=original.incident_id).count() == 3
    assert "closed" in response.content.decode()


def test_it_shows_a_bad_follow_up_again_with_the_sends_errors(campus, client):
    original = alert(campus)
    client.force_login(campus["manager"])

    response = client.post(watch_url(original, "follow-up/"), {
        "kind": "update", "update-title": "Update", "update-body": "Stay away.", "update-title_fr": "Mise à jour"})

    assert response.status_code == 400
    [(_kind, _label, form)] = [entry for entry in response.context["follow_up_forms"] if entry[0] == "update"]
    assert form.errors["body_fr"]
    assert Notification.objects.count() == 1


# --- end to end, with a real worker ---------------------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_it_delivers_an_alert_its_update_and_its_all_clear_as_one_thread_through_a_real_worker(
        smtp_peer, workers, campus):
    workers()
    api = jwt_client(campus["manager"])
    response = api.post(f"{API}notifications/", {
        "notifier": "security", "title": "Gas leak", "body": "Leave building C now.", "channels": ["email", "inbox"],
        "data": {"severity": "high"}, "audience": {"cohorts": ["campus"]}}, format="json")
    assert response.status_code == 201, response.json()
    original = Notification.objects.get(pk=response.json()["id"])
    for kind, title in (("update", "Update: building C"), ("all_clear", "All clear")):
        response = api.post(follow_ups_url(original), {"kind": kind, "title": title, "body": "News."}, format="json")
        assert response.status_code == 201, response.json()

    wait_until(lambda: InboxMessage.objects.filter(notification__incident_id=original.incident_id).count() == 6,
               timeout=60, message="the thread in both students' inboxes")
    wait_until(lambda: len(smtp_peer.messages) == 6, timeout=60, message="six emails")
    assert Incident.objects.get(pk=original.incident_id).closed_at is not None
    items = jwt_client(campus["people"][0]).get(f"{API}me/inbox/").json()["results"]
    # The inbox lists by arrival, and two workers may write the three in any order: the thread is the same.
    assert sorted((item["title"].rsplit(": ", 1)[-1], item["thread_role"]) for item in items) == [
        ("All clear", "all_clear"), ("Gas leak", "alert"), ("building C", "update")]
    assert {item["incident"] for item in items} == {original.incident_id}
