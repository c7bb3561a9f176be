"""The two-person rule: a free-text emergency alert drafted by one person is sent once a second approves it."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Cohort, Role
from notifications.models import Delivery, FanoutPage, IncidentTemplate, InboxMessage, LedgerEntry, Notification
from notifications.services import notification_approve, notification_reject, notification_send
from notifications.services.incidents import FollowUpRefused, incident_follow_up

from .api_support import API, jwt_client
from .conftest import BROKERS, make_user
from .delivery_helpers import fan_out_and_send
from .peers import wait_until

ALERT = {"notifier": "security", "title": "Gas leak", "body": "Leave building C now.", "channels": ["email", "inbox"],
         "data": {"severity": "critical"}}


def emergency_staff(username, cohort):
    """A staff member of `cohort` with the Emergency role (notifications.send_emergency)."""
    user = make_user(username, role=Role.STAFF, is_staff=True, first_name=username.title(), last_name="Manager")
    user.groups.add(Group.objects.get(name=Role.EMERGENCY))
    cohort.managers.add(user)
    return user


@pytest.fixture
def campus(db):
    cohort = Cohort.objects.create(code="campus-east", name="East campus")
    students = [make_user(f"s100000{n}") for n in range(3)]
    cohort.members.add(*students)
    drafter = emergency_staff("drafter", cohort)
    approver = emergency_staff("approver", cohort)
    plain = make_user("plainstaff", role=Role.STAFF, is_staff=True)
    cohort.managers.add(plain)
    return {"cohort": cohort, "students": students, "drafter": drafter, "approver": approver, "plain": plain}


def draft(campus, **fields):
    notification, _ = notification_send(sender=campus["drafter"], audience={"cohorts": [campus["cohort"].code]},
                                        **{**ALERT, **fields})
    return notification


def events(notification):
    return list(LedgerEntry.objects.filter(notification_id=notification.pk).values_list("event", flat=True))


# --- the service -----------------------------------------------------------------------------

def test_it_holds_a_free_text_alert_until_a_second_person_approves_it(campus, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        alert = draft(campus)

    assert alert.status == Notification.Status.AWAITING_APPROVAL
    assert callbacks == []  # no fan-out handed to the workers
    assert not Delivery.objects.filter(notification=alert).exists() and not FanoutPage.objects.exists()
    assert events(alert) == ["drafted", "content"]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification_approve(alert, by=campus["approver"])

    alert.refresh_from_db()
    assert (alert.status, alert.approved_by) == (Notification.Status.QUEUED, campus["approver"])
    assert alert.approved_at is not None
    assert len(callbacks) == 1  # the fan-out, once the approval commits
    assert events(alert) == ["drafted", "content", "approved", "sent"]
    approved = LedgerEntry.objects.get(notification_id=alert.pk, event="approved")
    assert approved.data == {"drafted_by": "Drafter Manager (drafter)", "approved_by": "Approver Manager (approver)"}
    assert approved.actor == "Approver Manager (approver)"
    assert LedgerEntry.objects.get(notification_id=alert.pk, event="sent").data == {
        "status": "queued", "scheduled_for": None}


def test_it_refuses_the_drafter_and_anyone_without_the_emergency_permission(campus):
    alert = draft(campus)

    with pytest.raises(PermissionDenied, match="You drafted this alert"):
        notification_approve(alert, by=campus["drafter"])
    with pytest.raises(PermissionDenied, match="emergency permission"):
        notification_approve(alert, by=campus["plain"])
    with pytest.raises(PermissionDenied, match="You drafted this alert"):
        notification_reject(alert, by=campus["drafter"], reason="Withdrawn")

    alert.refresh_from_db()
    assert alert.status == Notification.Status.AWAITING_APPROVAL and events(alert) == ["drafted", "content"]


def test_a_second_approval_of_the_same_alert_is_refused_and_sends_nothing_twice(
        campus, django_capture_on_commit_callbacks):
    alert = draft(campus)
    third = emergency_staff("third", campus["cohort"])
    stale = Notification.objects.get(pk=alert.pk)  # what a second approver's page loaded before the first clicked

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification_approve(alert, by=campus["approver"])
        with pytest.raises(ValidationError, match="only an alert awaiting approval"):
            notification_approve(stale, by=third)
        with pytest.raises(ValidationError, match="only an alert awaiting approval"):
            notification_reject(stale, by=third, reason="Too late")

    assert len(callbacks) == 1
    assert Notification.objects.get(pk=alert.pk).approved_by == campus["approver"]
    assert events(alert).count("sent") == 1


def follow_up(original, campus, kind, **fields):
    return incident_follow_up(original, sender=campus["drafter"], kind=kind, title=f"{kind} title",
                              body=f"{kind} body", **fields)[0]


def test_an_update_awaiting_approval_never_goes_after_the_all_clear(campus, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        alert = draft(campus)
        notification_approve(alert, by=campus["approver"])
        update = follow_up(alert, campus, "update")
        all_clear = follow_up(alert, campus, "all_clear")
        assert update.status == all_clear.status == Notification.Status.AWAITING_APPROVAL

        with pytest.raises(FollowUpRefused) as second:  # one all-clear of an incident waits at a time
            follow_up(alert, campus, "all_clear")
        assert second.value.code == "all_clear_pending"

        notification_approve(all_clear, by=campus["approver"])
        fan_out_and_send(all_clear)  # it goes, and closes the incident
        with pytest.raises(ValidationError, match="all-clear of this incident was sent") as refused:
            notification_approve(update, by=campus["approver"])
    assert refused.value.code == "incident_closed"
    update.refresh_from_db()
    assert update.status == Notification.Status.AWAITING_APPROVAL and not Delivery.objects.filter(
        notification=update).exists()
    notification_reject(update, by=campus["approver"], reason="The all-clear went first.")
    update.refresh_from_db()
    assert update.status == Notification.Status.CANCELLED


def test_the_api_answers_409_to_approving_a_follow_up_of_a_closed_incident(campus, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        alert = draft(campus)
        notification_approve(alert, by=campus["approver"])
        update = follow_up(alert, campus, "update")
        all_clear = follow_up(alert, campus, "all_clear")
        notification_approve(all_clear, by=campus["approver"])
        fan_out_and_send(all_clear)

        response = jwt_client(campus["approver"]).post(f"{API}notifications/{update.pk}/approve/")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "incident_closed" and "all-clear" in str(body), body


def test_it_refuses_with_a_reason_the_drafter_can_read_and_never_sends(campus):
    alert = draft(campus)

    with pytest.raises(ValidationError) as exc:
        notification_reject(alert, by=campus["approver"], reason="  ")
    assert "reason" in exc.value.message_dict

    notification_reject(alert, by=campus["approver"], reason="Wrong building: it is C2.")

    alert.refresh_from_db()
    assert (alert.status, alert.refused_by, alert.refusal_reason) == (
        Notification.Status.CANCELLED, campus["approver"], "Wrong building: it is C2.")
    entry = LedgerEntry.objects.get(notification_id=alert.pk, event="approval_refused")
    assert entry.data == {"drafted_by": "Drafter Manager (drafter)", "refused_by": "Approver Manager (approver)",
                          "reason": "Wrong building: it is C2."}
    assert not Delivery.objects.filter(notification=alert).exists()


def test_system_alerts_template_alerts_and_alerts_with_the_rule_off_go_at_once(campus, settings):
    system, _ = notification_send(sender=None, audience={"cohorts": ["campus-east"]}, **ALERT)
    template = IncidentTemplate.objects.create(name="Gas leak", kind="other", title="Gas leak", body="Leave.")
    from_template = draft(campus, template=template, template_version=template.version)
    settings.EMERGENCY_TWO_PERSON_RULE = False
    rule_off = draft(campus)

    assert [n.status for n in (system, from_template, rule_off)] == ["queued"] * 3
    assert events(system) == ["drafted", "content", "sent"]


def test_it_needs_the_emergency_permission_to_send_an_alert(campus):
    with pytest.raises(PermissionDenied, match="emergency permission"):
        notification_send(sender=campus["plain"], audience={"cohorts": ["campus-east"]}, **ALERT)
    assert not Notification.objects.exists()


def test_an_approved_scheduled_alert_waits_for_its_time(campus):
    later = timezone.now() + timedelta(hours=2)
    alert = draft(campus, scheduled_for=later)
    assert alert.status == Notification.Status.AWAITING_APPROVAL

    notification_approve(alert, by=campus["approver"])

    alert.refresh_from_db()
    assert alert.status == Notification.Status.SCHEDULED
    assert LedgerEntry.objects.get(notification_id=alert.pk, event="sent").data == {
        "status": "scheduled", "scheduled_for": later.isoformat()}


# --- the API -----------------------------------------------------------------------------------

def api_alert(client, **fields):
    return client.post(f"{API}notifications/", {**ALERT, "audience": {"cohorts": ["campus-east"]}, **fields},
                       format="json")


def test_the_api_drafts_approves_and_shows_both_names(campus):
    response = api_alert(jwt_client(campus["drafter"]))
    assert response.status_code == 201, response.json()
    alert = response.json()
    assert alert["status"] == "awaiting_approval" and alert["approved_by"] is None

    as_drafter = jwt_client(campus["drafter"]).post(f"{API}notifications/{alert['id']}/approve/")
    assert as_drafter.status_code == 403
    assert "You drafted this alert" in as_drafter.json()["message"]
    assert jwt_client(campus["plain"]).post(f"{API}notifications/{alert['id']}/approve/").status_code == 403

    approved = jwt_client(campus["approver"]).post(f"{API}notifications/{alert['id']}/approve/")
    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["approved_by"], approved.json()["sender"]) == (
        "queued", "approver", "drafter")

    again = jwt_client(campus["approver"]).post(f"{API}notifications/{alert['id']}/approve/")
    assert again.status_code == 409 and again.json()["code"] == "not_awaiting_approval"


def test_the_api_refuses_with_a_reason_and_needs_one(campus):
    alert = api_alert(jwt_client(campus["drafter"])).json()
    approver = jwt_client(campus["approver"])

    blank = approver.post(f"{API}notifications/{alert['id']}/reject/", {"reason": ""}, format="json")
    assert blank.status_code == 400 and "reason" in blank.json()["errors"]
    as_drafter = jwt_client(campus["drafter"]).post(f"{API}notifications/{alert['id']}/reject/",
                                                    {"reason": "Mine"}, format="json")
    assert as_drafter.status_code == 403

    refused = approver.post(f"{API}notifications/{alert['id']}/reject/", {"reason": "Not confirmed yet."},
                            format="json")
    assert refused.status_code == 200
    shown = jwt_client(campus["drafter"]).get(f"{API}notifications/{alert['id']}/").json()
    assert (shown["status"], shown["refused_by"], shown["refusal_reason"]) == (
        "cancelled", "approver", "Not confirmed yet.")
    assert approver.post(f"{API}notifications/{alert['id']}/reject/", {"reason": "x"},
                         format="json").status_code == 409


def test_the_api_refuses_an_alert_from_staff_without_the_emergency_role(campus):
    response = api_alert(jwt_client(campus["plain"]))

    assert response.status_code == 403
    assert not Notification.objects.exists()


def test_an_alert_awaiting_approval_can_be_cancelled(campus):
    alert = api_alert(jwt_client(campus["drafter"])).json()

    response = jwt_client(campus["drafter"]).post(f"{API}notifications/{alert['id']}/cancel/")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert jwt_client(campus["approver"]).post(f"{API}notifications/{alert['id']}/approve/").status_code == 409


# --- the console -------------------------------------------------------------------------------

def watch(client, alert):
    return client.get(f"/admin/notifications/notification/{alert.pk}/change/")


def test_the_console_lists_it_as_needing_action_and_only_another_person_may_approve(client, campus):
    alert = draft(campus)

    client.force_login(campus["drafter"])
    home = client.get("/admin/").content.decode()
    needs = home[home.index('id="needs-action"'):home.index('id="recent"')]
    assert "Gas leak" in needs and "waiting for a second person" in needs
    page = watch(client, alert).content.decode()
    assert "Drafted by Drafter Manager (drafter)" in page
    assert 'id="waiting-second-person"' in page and 'id="act-approve"' not in page
    assert 'data-state="awaiting"' in page  # watch.js polls slowly and reloads once it is approved
    client.post(f"/admin/notifications/notification/{alert.pk}/act/", {"action": "approve"})
    assert Notification.objects.get(pk=alert.pk).status == Notification.Status.AWAITING_APPROVAL

    client.force_login(campus["approver"])
    home = client.get("/admin/").content.decode()
    assert "drafted by Drafter Manager" in home[home.index('id="needs-action"'):home.index('id="recent"')]
    page = watch(client, alert).content.decode()
    assert 'id="act-approve"' in page and 'id="act-refuse"' in page
    response = client.post(f"/admin/notifications/notification/{alert.pk}/act/", {"action": "approve"}, follow=True)

    assert Notification.objects.get(pk=alert.pk).status == Notification.Status.QUEUED
    page = response.content.decode()
    assert "Drafted by Drafter Manager (drafter)" in page and "approved by Approver Manager (approver)" in page
    assert 'id="act-approve"' not in page


def test_the_console_hides_the_buttons_from_staff_without_the_permission(client, campus):
    alert = draft(campus)
    client.force_login(campus["plain"])

    # Staff of the cohort see the alert (their cohort's), not the decision.
    page = watch(client, alert).content.decode()
    assert 'id="act-approve"' not in page
    client.post(f"/admin/notifications/notification/{alert.pk}/act/", {"action": "approve"})
    assert Notification.objects.get(pk=alert.pk).status == Notification.Status.AWAITING_APPROVAL


def test_the_console_refuses_with_the_reason_shown(client, campus):
    alert = draft(campus)
    client.force_login(campus["approver"])

    response = client.post(f"/admin/notifications/notification/{alert.pk}/act/",
                           {"action": "refuse", "reason": "Wrong building."}, follow=True)

    page = response.content.decode()
    assert Notification.objects.get(pk=alert.pk).status == Notification.Status.CANCELLED
    assert "Refused by Approver Manager (approver): Wrong building." in page


def test_the_console_compose_says_it_awaits_approval(client, campus):
    client.force_login(campus["drafter"])
    form = {"notifier": "security", "category": "security", "priority": "urgent", "severity": "critical",
            "title": "Gas leak", "body": "Leave building C now.", "channels": ["email", "inbox"],
            "cohorts": [campus["cohort"].pk], "token": "t1"}

    confirmation = client.post("/admin/notifications/notification/add/", form).content.decode()
    assert 'id="needs-approval"' in confirmation
    response = client.post("/admin/notifications/notification/add/", {**form, "stage": "confirm"}, follow=True)

    alert = Notification.objects.get()
    assert alert.status == Notification.Status.AWAITING_APPROVAL
    assert "is awaiting approval" in response.content.decode()


# --- send_batch --------------------------------------------------------------------------------

def test_send_batch_cannot_bypass_the_rule(campus):
    args = ("--cohort", "campus-east", "--notifier", "security", "--title", "Gas leak", "--body", "Leave now.",
            "--data", '{"severity": "high"}')
    with pytest.raises(CommandError, match="needs --sender"):
        call_command("send_batch", *args, stdout=StringIO())
    with pytest.raises(CommandError, match="emergency permission"):
        call_command("send_batch", *args, "--sender", "plainstaff", stdout=StringIO())

    out = StringIO()
    call_command("send_batch", *args, "--sender", "drafter", stdout=out)

    alert = Notification.objects.get()
    assert alert.status == Notification.Status.AWAITING_APPROVAL
    assert f"Awaiting approval (two-person rule): {alert.pk}" in out.getvalue()


# --- real workers ------------------------------------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_a_real_worker_delivers_the_approved_alert_and_not_the_awaiting_one(broker, smtp_peer, workers):
    cohort = Cohort.objects.create(code="campus-east", name="East campus")
    students = [make_user(f"s200000{n}") for n in range(3)]
    cohort.members.add(*students)
    campus = {"cohort": cohort, "drafter": emergency_staff("drafter", cohort),
              "approver": emergency_staff("approver", cohort)}
    workers()

    waiting = draft(campus, title="Awaiting one")
    approved = draft(campus, title="Approved one")
    notification_approve(approved, by=campus["approver"])

    wait_until(lambda: Delivery.objects.filter(notification=approved, status="sent").count() == 6,
               timeout=60, message="six sent deliveries of the approved alert")
    wait_until(lambda: Notification.objects.get(pk=approved.pk).status == Notification.Status.SENT,
               message="approved alert marked sent")
    assert sorted(m["To"] for m in smtp_peer.messages) == sorted(s.email for s in students)
    assert all("Approved one" in m["Subject"] for m in smtp_peer.messages)
    assert InboxMessage.objects.filter(notification=approved).count() == 3
    waiting.refresh_from_db()
    assert waiting.status == Notification.Status.AWAITING_APPROVAL
    assert not Delivery.objects.filter(notification=waiting).exists()
    assert not InboxMessage.objects.filter(notification=waiting).exists()


def test_fan_out_of_an_awaiting_alert_does_nothing(campus):
    alert = draft(campus)

    fan_out_and_send(alert)

    alert.refresh_from_db()
    assert alert.status == Notification.Status.AWAITING_APPROVAL
    assert not Delivery.objects.filter(notification=alert).exists()
