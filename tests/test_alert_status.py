"""Actual, Exercise, Test: an exercise says so on every channel, a test goes only to the test list, drills
are listed."""

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from accounts.models import Cohort, Role
from notifications.engine.digest import Digest
from notifications.models import Delivery, InboxMessage, Notification
from notifications.services import notification_approve, notification_preview, notification_send

from .api_support import API, jwt_client
from .conftest import make_user
from .delivery_helpers import fan_out_and_send

ALERT = {"notifier": "security", "category": "security", "title": "Gas leak", "body": "Leave building C now.",
         "data": {"severity": "high"}}


@pytest.fixture
def campus(db, settings):
    settings.EMERGENCY_TEST_COHORT = "alert-testers"
    east = Cohort.objects.create(code="campus-east", name="East campus")
    testers = Cohort.objects.create(code="alert-testers", name="Alert test list")
    students = [make_user("s1000001"), make_user("s1000002", language="fr")]
    east.members.add(*students)
    tester = make_user("s1000009")
    testers.members.add(tester)
    manager = make_user("manager", role=Role.STAFF, is_staff=True, first_name="Maya", last_name="Manager")
    manager.groups.add(Group.objects.get(name=Role.EMERGENCY))
    east.managers.add(manager)
    admin = make_user("a3000001", role=Role.ADMIN, is_staff=True, is_superuser=True, first_name="Ada",
                      last_name="Admin")
    return {"east": east, "students": students, "tester": tester, "manager": manager, "admin": admin}


# --- the label, on every channel ---------------------------------------------------------------

def test_an_exercise_is_labelled_on_every_channel_in_the_recipients_language(campus):
    english, french = campus["students"]
    exercise = Notification(**ALERT, channels=["email", "sms", "push", "inbox"], alert_status="exercise",
                            requires_ack=True)

    en, fr = notification_preview(exercise, english), notification_preview(exercise, french)

    assert en["email"]["subject"] == "[HIGH] EXERCISE — Gas leak"
    assert "EXERCISE — Gas leak" in en["email"]["text"] and "EXERCISE — this is a drill." in en["email"]["text"]
    assert "EXERCISE — this is a drill." in en["email"]["html"]
    assert en["sms"]["text"].startswith("ALERT (high): EXERCISE — Gas leak. EXERCISE — this is a drill.")
    assert en["push"]["title"] == "ALERT: EXERCISE — Gas leak"
    assert en["push"]["body"].startswith("EXERCISE — this is a drill.")
    assert en["inbox"]["title"] == "Security alert (high): EXERCISE — Gas leak"
    assert en["inbox"]["body"].startswith("EXERCISE — this is a drill.")
    assert fr["email"]["subject"] == "[ALERTE ÉLEVÉE] EXERCICE — Gas leak"
    assert "EXERCICE — ceci est un exercice." in fr["email"]["text"]
    assert fr["sms"]["text"].startswith("ALERTE (élevée) : EXERCICE — Gas leak. EXERCICE — ceci est un exercice.")
    assert fr["push"]["title"] == "ALERTE : EXERCICE — Gas leak"
    assert fr["inbox"]["title"] == "Alerte de sécurité (élevée) : EXERCICE — Gas leak"


def test_a_test_alert_is_labelled_test_and_an_actual_one_is_not_labelled(campus):
    english, french = campus["students"]
    test = Notification(**ALERT, channels=["push"], alert_status="test")
    actual = Notification(**ALERT, channels=["push"])

    assert notification_preview(test, english)["push"]["title"] == "ALERT: TEST — Gas leak"
    assert notification_preview(test, french)["push"]["body"].startswith("TEST — ceci est un test")
    assert notification_preview(actual, english)["push"] == {
        "title": "ALERT: Gas leak", **{k: v for k, v in notification_preview(actual, english)["push"].items()
                                       if k != "title"}}
    assert "EXERCISE" not in str(notification_preview(actual, english))
    assert "TEST" not in str(notification_preview(actual, english))


def test_the_inbox_and_the_digest_carry_the_label(campus):
    alert, _ = notification_send(sender=None, audience={"cohorts": ["campus-east"]}, channels=["inbox"],
                                 alert_status="exercise", **ALERT)
    fan_out_and_send(alert)

    titles = dict(InboxMessage.objects.filter(notification=alert).values_list("recipient__username", "title"))
    bodies = dict(InboxMessage.objects.filter(notification=alert).values_list("recipient__username", "body"))
    assert titles == {"s1000001": "Security alert (high): EXERCISE — Gas leak",
                      "s1000002": "Alerte de sécurité (élevée) : EXERCICE — Gas leak"}
    assert bodies["s1000001"].startswith("EXERCISE — this is a drill.")
    digest = Digest(category="security", items=[alert])
    assert digest.items_for("fr")[0]["title"] == "EXERCICE — Gas leak"


# --- every door refuses an exercise that is not an emergency alert --------------------------------

def test_every_door_refuses_an_exercise_of_a_non_emergency_notification(campus, client):
    response = jwt_client(campus["admin"]).post(f"{API}notifications/", {
        "notifier": "academic", "title": "Lab", "body": "B12", "alert_status": "exercise",
        "audience": {"cohorts": ["campus-east"]}}, format="json")
    assert response.status_code == 400
    assert "alert_status" in response.json()["errors"]

    client.force_login(campus["admin"])
    page = client.post("/admin/notifications/notification/add/", {
        "notifier": "academic", "category": "announcement", "priority": "normal", "title": "Lab", "body": "B12",
        "cohorts": [campus["east"].pk], "alert_status": "exercise", "token": "t"})
    assert page.context["form"].errors["alert_status"] == [
        "Only an emergency alert (security and emergency) can be an exercise or a test."]

    with pytest.raises(CommandError, match="--alert-status: Only an emergency alert"):
        call_command("send_batch", "--cohort", "campus-east", "--title", "Lab", "--body", "B12",
                     "--alert-status", "exercise", stdout=StringIO())
    assert not Notification.objects.exists()


# --- a test goes only to the test list ----------------------------------------------------------

def test_a_test_alert_goes_only_to_the_test_list_whatever_the_audience(campus):
    response = jwt_client(campus["manager"]).post(f"{API}notifications/", {
        **ALERT, "channels": ["inbox"], "alert_status": "test", "audience": {"cohorts": ["campus-east"]}},
        format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["audience"] == {"cohorts": ["alert-testers"]}
    assert response.json()["alert_status"] == "test"
    alert = Notification.objects.get()
    notification_approve(alert, by=campus["admin"])

    fan_out_and_send(alert)

    assert list(Delivery.objects.filter(notification=alert).values_list("recipient__username", flat=True)) == [
        "s1000009"]


def test_a_test_alert_is_refused_without_a_test_list(campus, settings):
    settings.EMERGENCY_TEST_COHORT = ""
    client = jwt_client(campus["admin"])
    body = {**ALERT, "alert_status": "test", "audience": {"cohorts": ["campus-east"]}}

    response = client.post(f"{API}notifications/", body, format="json")
    assert response.status_code == 400
    assert "EMERGENCY_TEST_COHORT" in response.json()["errors"]["alert_status"][0]

    settings.EMERGENCY_TEST_COHORT = "gone"
    response = client.post(f"{API}notifications/", body, format="json")
    assert response.status_code == 400
    assert "the cohort gone, which does not exist" in response.json()["errors"]["alert_status"][0]
    assert not Notification.objects.exists()


def test_send_batch_sends_an_exercise(campus):
    out = StringIO()
    call_command("send_batch", "--cohort", "campus-east", "--notifier", "security", "--title", "Gas leak",
                 "--body", "Leave now.", "--data", '{"severity": "high"}', "--alert-status", "exercise",
                 "--sender", "manager", stdout=out)

    alert = Notification.objects.get()
    assert (alert.alert_status, alert.status) == ("exercise", "awaiting_approval")


def test_the_console_compose_sends_an_exercise(client, campus):
    client.force_login(campus["manager"])
    form = {"notifier": "security", "category": "security", "priority": "urgent", "severity": "high",
            "title": "Gas leak", "body": "Leave building C now.", "channels": ["inbox"], "alert_status": "exercise",
            "cohorts": [campus["east"].pk], "token": "t1"}

    confirmation = client.post("/admin/notifications/notification/add/", form)
    assert "EXERCISE — Gas leak" in confirmation.content.decode()  # the preview shows the label
    client.post("/admin/notifications/notification/add/", {**form, "stage": "confirm"})

    assert Notification.objects.get().alert_status == "exercise"


# --- drills and tests, for the Clery Act -----------------------------------------------------------

@pytest.fixture
def drills(campus):
    def sent(title, status, by, approver=None):
        alert, _ = notification_send(sender=by, audience={"cohorts": ["campus-east"]}, channels=["inbox"],
                                     alert_status=status, **{**ALERT, "title": title})
        if approver:
            notification_approve(alert, by=approver)
        fan_out_and_send(alert)
        return alert

    exercise = sent("Shelter drill", "exercise", campus["manager"], approver=campus["admin"])
    InboxMessage.objects.filter(notification=exercise, recipient=campus["students"][0]).update(
        acknowledged_at=exercise.created_at)
    test = sent("Siren test", "test", None)
    sent("Real gas leak", "actual", None)
    return exercise, test


def test_the_drills_api_lists_exercises_and_tests_of_the_year(campus, drills):
    exercise, test = drills
    year = exercise.created_at.year

    rows = jwt_client(campus["manager"]).get(f"{API}drills/?year={year}").json()

    assert [(r["id"], r["title"], r["alert_status"], r["sender"], r["approved_by"], r["reached"], r["acknowledged"])
            for r in rows] == [(exercise.pk, "Shelter drill", "exercise", "manager", "a3000001", 2, 1),
                               (test.pk, "Siren test", "test", None, None, 1, 0)]
    assert jwt_client(campus["manager"]).get(f"{API}drills/?year={year - 1}").json() == []
    assert jwt_client(campus["manager"]).get(f"{API}drills/?year=abc").status_code == 400
    assert jwt_client(campus["students"][0]).get(f"{API}drills/?year={year}").status_code == 403


def test_the_drills_page_lists_them_for_staff_with_the_permission_only(client, campus, drills):
    exercise, _test = drills
    plain = make_user("plainstaff", role=Role.STAFF, is_staff=True)

    client.force_login(campus["manager"])
    page = client.get(f"/admin/drills/?year={exercise.created_at.year}").content.decode()
    assert "Shelter drill" in page and "Siren test" in page and "Real gas leak" not in page
    assert "Maya Manager" in page and "Ada Admin" in page and "2 of 2 reached" in page
    assert 'href="/admin/drills/"' in client.get("/admin/").content.decode()

    client.force_login(plain)
    assert client.get("/admin/drills/").status_code == 403


def test_a_check_warns_when_the_test_list_names_no_cohort(campus, settings):
    assert not [m for m in run_checks(databases=["default"]) if m.id == "flashnotify.W045"]

    settings.EMERGENCY_TEST_COHORT = "gone"
    [warning] = [m for m in run_checks(databases=["default"]) if m.id == "flashnotify.W045"]
    assert warning.msg == "EMERGENCY_TEST_COHORT='gone' names no cohort: every Test alert is refused."
