"""Compose in the console: a confirmation with counts after preferences and a preview, then the send service."""

import pytest
from django.contrib.admin.models import ADDITION, LogEntry

from accounts.models import User
from notifications.models import Notification, Preference

from .console_helpers import two_cohorts

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
    assert "severity" in response.context["form"].errors["severity"][0]
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
