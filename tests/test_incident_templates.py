"""Incident templates: the starter library, saving versions, sending an alert from one (service, console, API)."""

import importlib

import pytest
from django.contrib.auth.models import Group
from django.db import connection, migrations
from django.db.migrations.loader import MigrationLoader
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.models import Cohort, Role
from notifications.models import Incident, IncidentTemplate, IncidentTemplateVersion, Notification
from notifications.services.templates import alert_from_template, incident_template_save

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client
from .conftest import make_user
from .incident_support import STARTER_MIGRATION, starter_library  # noqa: F401


@pytest.fixture(autouse=True)
def library(request):
    """Every test here uses the starter library."""
    request.getfixturevalue("starter_library")

STARTER = {"Active threat: shelter in place": "active_threat", "Severe weather": "severe_weather",
           "Fire or evacuation": "fire_evacuation", "Campus closure": "campus_closure",
           "Utility outage": "utility_outage", "All clear": "all_clear"}
VARIABLES = {"building": "Library", "time": "14:05", "instructions": "Stay in room 2."}


def emergency_staff(username="e5000001", **fields):
    """Staff with the Emergency role: may send emergency alerts."""
    user = make_user(username, role=Role.STAFF, is_staff=True, email=f"{username}@example.edu", **fields)
    user.groups.add(Group.objects.get(name=Role.EMERGENCY))
    return user


@pytest.fixture
def campus(db):
    sender = emergency_staff()
    cohort = Cohort.objects.create(code="cs101", name="Computer Science 101")
    cohort.managers.add(sender)
    now = timezone.now()
    students = [make_user(f"s10000{n:02d}", phone=f"+155501000{n:02d}", phone_verified_at=now,
                          language="fr" if n % 2 else "en") for n in range(4)]
    cohort.members.add(*students)
    return {"sender": sender, "cohort": cohort, "students": students}


def threat():
    return IncidentTemplate.objects.get(kind="active_threat")


# --- the starter library ------------------------------------------------------------------

@pytest.mark.django_db
def test_it_ships_the_starter_library_in_english_and_french_after_migrate():
    # What migrate runs: the data migration's step, on the models as they were at that migration. (A
    # transactional test's flush may have emptied the table before this test: start from empty.)
    IncidentTemplate.objects.all().delete()
    migration = importlib.import_module(STARTER_MIGRATION)
    step = next(op for op in migration.Migration.operations if isinstance(op, migrations.RunPython))
    historical = MigrationLoader(connection).project_state(("notifications", "0011_em_templates")).apps
    step.code(historical, None)
    step.code(historical, None)  # idempotent: a second run adds nothing

    templates = {t.name: t for t in IncidentTemplate.objects.all()}
    assert {name: templates[name].kind for name in templates} == STARTER
    for template in templates.values():
        assert template.active and template.version == 1
        assert template.channels == ["push", "sms", "email", "inbox"]
        assert set(template.translations) == {"fr"} and template.translations["fr"]["title"]
        assert set(template.variables) <= {"building", "time", "instructions"}
        assert template.versions.get().version == 1
        incident_template_save(template, by=None)  # valid as saved: saving again changes nothing
        assert template.version == 1
    active = templates["Active threat: shelter in place"]
    assert active.checkin and active.escalation_delay_minutes == 5
    assert active.escalation_ladder == ["push", "sms", "email"] and active.severity == "critical"


# --- saving: validation and versions ------------------------------------------------------

@pytest.mark.django_db
def test_it_raises_the_version_on_every_change_of_content_and_keeps_each_version(admin_user):
    template = IncidentTemplate(name="Gas leak", kind="other", title="Gas leak in {building}",
                                body="Leave {building} now.", variables=["building"], severity="high",
                                channels=["sms", "email"])
    incident_template_save(template, by=admin_user)
    assert template.version == 1

    template.body = "Leave {building} now by the nearest exit."
    incident_template_save(template, by=admin_user)
    template.name = "Gas leak (any building)"
    incident_template_save(template, by=admin_user)  # not content: the version stays
    template.checkin = True
    incident_template_save(template, by=admin_user)

    template.refresh_from_db()
    assert template.version == 3
    versions = list(IncidentTemplateVersion.objects.filter(template=template).order_by("version"))
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[0].content["body"] == "Leave {building} now."
    assert versions[1].content["body"] == "Leave {building} now by the nearest exit."
    assert versions[2].content["checkin"] is True and versions[2].saved_by == admin_user


@pytest.mark.django_db
def test_it_refuses_a_template_by_field(admin_user):
    template = IncidentTemplate(
        name="Bad", kind="other", title="Leak in {building} at {hour}", body="Leave\x07 now.",
        translations={"fr": {"title": "Fuite à {place}", "body": "Sortez."}}, variables=["building", "unused"],
        severity="extreme", channels=["sms", "fax"], audience={"cohorts": ["nope"]}, escalation_ladder=["push"])

    with pytest.raises(ValidationError) as raised:
        incident_template_save(template, by=admin_user)

    errors = raised.value.message_dict
    assert "{hour}" in errors["title"][0]
    assert "{place}" in errors["title_fr"][0]
    assert any("unused" in message for message in errors["variables"])
    assert "control character" in errors["body"][0]
    assert "extreme" in errors["severity"][0]
    assert "fax" in errors["channels"][0]
    assert "nope" in errors["audience"][0]
    assert errors["escalation_ladder"]
    assert template.pk is None


# --- sending from a template --------------------------------------------------------------

@pytest.mark.django_db
def test_it_sends_an_alert_from_a_template_at_once_with_the_version_it_used(campus):
    notification, created = alert_from_template(threat(), sender=campus["sender"], variables=VARIABLES,
                                                audience={"cohorts": ["cs101"]}, alert_status="exercise")

    assert created
    assert notification.notifier == "security" and notification.data == {"severity": "critical"}
    assert notification.title == "Active threat near Library: shelter in place"
    assert "at 14:05" in notification.body and "Stay in room 2." in notification.body
    assert notification.translations["fr"]["title"] == "Menace active près de Library : confinez-vous"
    assert (notification.template, notification.template_version) == (threat(), 1)
    assert notification.alert_status == "exercise" and notification.checkin is True
    assert notification.escalation_delay_minutes == 5 and notification.escalation_ladder == ["push", "sms", "email"]
    assert notification.status == Notification.Status.QUEUED  # a template send does not wait for approval
    assert notification.incident is not None and notification.thread_role == "alert"


@pytest.mark.django_db
def test_it_sends_a_follow_up_in_an_incidents_thread(campus):
    first, _ = alert_from_template(threat(), sender=campus["sender"], variables=VARIABLES,
                                   audience={"cohorts": ["cs101"]})
    all_clear = IncidentTemplate.objects.get(kind="all_clear")

    follow_up, _ = alert_from_template(all_clear, sender=campus["sender"], variables={
        "time": "15:00", "instructions": "Classes resume."}, audience=first.audience, incident=first.incident,
        thread_role=Notification.ThreadRole.ALL_CLEAR)

    assert follow_up.incident == first.incident and follow_up.thread_role == "all_clear"
    assert Incident.objects.count() == 1


@pytest.mark.django_db
def test_it_refuses_missing_unknown_and_multi_line_variables_naming_them(campus):
    with pytest.raises(ValidationError) as raised:
        alert_from_template(threat(), sender=campus["sender"], audience={"cohorts": ["cs101"]},
                            variables={"building": "Library\nB", "where": "x", "time": ""})

    messages = raised.value.message_dict["variables"]
    assert any("where" in m for m in messages)
    assert any("time" in m and "instructions" in m and "Missing" in m for m in messages)
    assert any("building" in m and "one line" in m for m in messages)
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_it_refuses_an_inactive_template_and_a_sender_without_the_emergency_permission(campus, staff_user):
    template = threat()
    with pytest.raises(PermissionDenied):
        alert_from_template(template, sender=staff_user, variables=VARIABLES, audience={"cohorts": ["cs101"]})
    template.active = False
    incident_template_save(template, by=campus["sender"])
    with pytest.raises(ValidationError) as raised:
        alert_from_template(template, sender=campus["sender"], variables=VARIABLES, audience={"cohorts": ["cs101"]})
    assert "template" in raised.value.message_dict
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_it_checks_the_senders_reach_as_any_send_does(campus):
    Cohort.objects.create(code="ma201", name="Mathematics 201")
    with pytest.raises(PermissionDenied):
        alert_from_template(threat(), sender=campus["sender"], variables=VARIABLES, audience={"cohorts": ["ma201"]})


# --- the admin ----------------------------------------------------------------------------

def admin_form(template, **overrides):
    form = {"name": template.name, "kind": template.kind, "title": template.title, "body": template.body,
            "title_fr": template.translations["fr"]["title"], "body_fr": template.translations["fr"]["body"],
            "variables_text": " ".join(template.variables), "severity": template.severity,
            "channels": template.channels, "audience": "{}", "escalation_delay_minutes":
            template.escalation_delay_minutes or "", "ladder_text": " ".join(template.escalation_ladder),
            "checkin": "on" if template.checkin else "", "active": "on",
            "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0", "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "1000"}
    form.update(overrides)
    return {key: value for key, value in form.items() if value != ""}


@pytest.mark.django_db
def test_an_admin_changes_a_template_in_the_console_and_sees_its_history(client, admin_user):
    template = threat()
    client.force_login(admin_user)
    url = f"/admin/notifications/incidenttemplate/{template.pk}/change/"

    response = client.post(url, admin_form(template, body=template.body + " Call 5555 if you can."))

    assert response.status_code == 302, response.context["adminform"].form.errors
    template.refresh_from_db()
    assert template.version == 2 and template.body.endswith("Call 5555 if you can.")
    page = client.get(url).content.decode()
    assert "Call 5555 if you can." in page and "version history" in page.lower()
    assert list(template.versions.values_list("version", flat=True)) == [2, 1]


@pytest.mark.django_db
def test_the_admin_form_shows_the_services_refusals_by_field(client, admin_user):
    template = threat()
    client.force_login(admin_user)

    response = client.post(f"/admin/notifications/incidenttemplate/{template.pk}/change/",
                           admin_form(template, title="Threat near {bulding}", variables_text="building time"))

    errors = response.context["adminform"].form.errors
    assert "{bulding}" in errors["title"][0]
    assert "{instructions}" in errors["body"][0]  # used, no longer declared
    assert threat().version == 1


@pytest.mark.django_db
def test_the_emergency_role_views_templates_and_a_used_template_cannot_be_deleted(client, campus, admin_user):
    template = threat()
    alert_from_template(template, sender=campus["sender"], variables=VARIABLES, audience={"cohorts": ["cs101"]})
    client.force_login(campus["sender"])
    url = f"/admin/notifications/incidenttemplate/{template.pk}/change/"

    assert client.get("/admin/notifications/incidenttemplate/").status_code == 200
    assert client.get(url).status_code == 200
    assert client.post(url, admin_form(template, body="Changed.")).status_code == 403
    assert client.get("/admin/notifications/incidenttemplate/add/").status_code == 403

    client.force_login(admin_user)
    assert client.get(f"/admin/notifications/incidenttemplate/{template.pk}/delete/").status_code == 403
    response = client.post("/admin/notifications/incidenttemplate/",
                           {"action": "deactivate", "_selected_action": [template.pk], "index": 0})
    assert response.status_code == 302
    template.refresh_from_db()
    assert not template.active and template.version == 1
    unused = IncidentTemplate.objects.get(kind="campus_closure")
    assert client.post(f"/admin/notifications/incidenttemplate/{unused.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not IncidentTemplate.objects.filter(pk=unused.pk).exists()


# --- the console: three steps -------------------------------------------------------------

@pytest.mark.django_db
def test_a_staff_member_with_the_permission_sends_an_alert_in_three_steps(client, campus):
    client.force_login(campus["sender"])
    home = client.get("/admin/").content.decode()
    assert 'href="/admin/emergency/"' in home and "Send an emergency alert" in home

    # 1: pick
    picked = client.get("/admin/emergency/")
    template = threat()
    assert picked.status_code == 200 and f"/admin/emergency/{template.pk}/" in picked.content.decode()
    assert IncidentTemplate.objects.get(kind="all_clear").name in picked.content.decode()
    # 2: fill in
    form = client.get(f"/admin/emergency/{template.pk}/").context["form"]
    assert form.initial["checkin"] is True and form.initial["version"] == 1
    fields = {"var_building": "Library", "var_time": "14:05", "var_instructions": "Stay in room 2.",
              "alert_status": "exercise", "cohorts": [campus["cohort"].pk], "checkin": "on", "version": "1",
              "token": "tok-emergency"}
    confirm = client.post(f"/admin/emergency/{template.pk}/", fields)
    assert confirm.status_code == 200, confirm.context["form"].errors
    # 3: confirm: reach per channel, preview, estimate; then send
    assert confirm.context["plan"]["people"] == 4
    rows = {row["channel"]: row for row in confirm.context["rows"]}
    assert rows["sms"]["receive"] == 4 and rows["email"]["receive"] == 4
    assert confirm.context["estimate"]["sms"]["recipients"] == 4
    page = confirm.content.decode()
    assert 'id="estimate"' in page and "Active threat near Library" in page
    assert Notification.objects.count() == 0

    sent = client.post(f"/admin/emergency/{template.pk}/", {**fields, "stage": "confirm"})

    notification = Notification.objects.get()
    assert sent.status_code == 302
    assert sent["Location"] == f"/admin/notifications/notification/{notification.pk}/change/"
    assert (notification.template_id, notification.template_version) == (template.pk, 1)
    assert notification.alert_status == "exercise" and notification.audience == {"cohorts": ["cs101"]}
    again = client.post(f"/admin/emergency/{template.pk}/", {**fields, "stage": "confirm"})  # a double submit
    assert again.status_code == 302 and Notification.objects.count() == 1


@pytest.mark.django_db
def test_the_confirmation_shares_the_composes_plan_and_warns_of_an_sms_that_will_be_cut(client, campus, settings):
    settings.SMS_MAX_SEGMENTS = 1
    client.force_login(campus["sender"])
    template = threat()
    confirm = client.post(f"/admin/emergency/{template.pk}/", {
        "var_building": "Library", "var_time": "14:05", "var_instructions": "Stay in room 2. " * 12,
        "alert_status": "exercise", "cohorts": [campus["cohort"].pk], "checkin": "on", "version": "1"})
    page = confirm.content.decode()
    assert confirm.status_code == 200 and 'id="plan"' in page and 'id="preview"' in page
    assert "Longer than 1 segments: it will be cut." in page


@pytest.mark.django_db
def test_the_console_flow_refuses_bad_input_on_the_form(client, campus):
    client.force_login(campus["sender"])
    template = threat()
    response = client.post(f"/admin/emergency/{template.pk}/", {
        "var_building": "Library", "var_time": "14:05", "var_instructions": "", "alert_status": "actual",
        "cohorts": [], "version": "1"})
    errors = response.context["form"].errors
    assert "var_instructions" in errors and "__all__" in errors  # a variable, and no audience
    template.body += " Updated."
    incident_template_save(template, by=campus["sender"])
    stale = client.post(f"/admin/emergency/{template.pk}/", {
        "var_building": "Library", "var_time": "14:05", "var_instructions": "x", "alert_status": "actual",
        "cohorts": [campus["cohort"].pk], "version": "1"})
    assert "version 2" in " ".join(stale.context["form"].non_field_errors())
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_staff_without_the_permission_neither_see_nor_open_the_flow(client, staff_user):
    client.force_login(staff_user)
    assert "/admin/emergency/" not in client.get("/admin/").content.decode()
    assert client.get("/admin/emergency/").status_code == 403
    assert client.get(f"/admin/emergency/{threat().pk}/").status_code == 403


# --- the API ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_api_lists_the_active_templates(campus):
    IncidentTemplate.objects.filter(kind="utility_outage").update(active=False)
    response = jwt_client(campus["sender"]).get(f"{API}incident-templates/")
    assert response.status_code == 200
    rows = {row["kind"]: row for row in response.json()}
    assert "utility_outage" not in rows and len(rows) == 5
    assert rows["active_threat"] == {
        "id": threat().pk, "name": "Active threat: shelter in place", "kind": "active_threat", "version": 1,
        "variables": ["building", "time", "instructions"], "channels": ["push", "sms", "email", "inbox"],
        "severity": "critical", "checkin": True, "escalation": {"delay_minutes": 5, "ladder": ["push", "sms", "email"]}}


@pytest.mark.django_db
def test_the_api_sends_from_a_template_with_idempotency(campus):
    client = jwt_client(campus["sender"])
    url = f"{API}incident-templates/{threat().pk}/send/"
    body = {"variables": VARIABLES, "alert_status": "exercise", "audience": {"cohorts": ["cs101"]}}

    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="alert-1")
    again = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="alert-1")
    other = client.post(url, {**body, "variables": {**VARIABLES, "building": "Gym"}}, format="json",
                        HTTP_IDEMPOTENCY_KEY="alert-1")

    assert first.status_code == 201, first.json()
    assert first.json()["title"] == "Active threat near Library: shelter in place"
    assert first.json()["notifier"] == "security" and first.json()["data"] == {"severity": "critical"}
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert other.status_code == 409
    notification = Notification.objects.get()
    assert notification.template_version == 1 and notification.alert_status == "exercise"


@pytest.mark.django_db
def test_the_api_refuses_bad_input_by_field_and_callers_without_the_permission(campus, staff_user):
    url = f"{API}incident-templates/{threat().pk}/send/"
    bad = jwt_client(campus["sender"]).post(url, {"variables": {"building": "Library"}, "alert_status": "drill",
                                                  "audience": {"cohorts": ["cs101"]}}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"alert_status"}
    missing = jwt_client(campus["sender"]).post(url, {"variables": {"building": "Library"},
                                                      "audience": {"cohorts": ["cs101"]}}, format="json")
    assert missing.status_code == 400 and "instructions" in missing.json()["errors"]["variables"][0]

    forbidden = jwt_client(staff_user).post(url, {"variables": VARIABLES, "audience": {"cohorts": ["cs101"]}},
                                            format="json")
    assert forbidden.status_code == 403
    assert jwt_client(staff_user).get(f"{API}incident-templates/").status_code == 403
    assert jwt_client(campus["sender"]).post(f"{API}incident-templates/999999/send/", {}, format="json"
                                             ).status_code == 404
    IncidentTemplate.objects.filter(kind="utility_outage").update(active=False)
    inactive = jwt_client(campus["sender"]).post(
        f"{API}incident-templates/{IncidentTemplate.objects.get(kind='utility_outage').pk}/send/",
        {"variables": VARIABLES, "audience": {"cohorts": ["cs101"]}}, format="json")
    assert inactive.status_code == 400 and set(inactive.json()["errors"]) == {"template"}
    assert Notification.objects.count() == 0
