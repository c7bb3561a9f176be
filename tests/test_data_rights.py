"""Data rights: a person's export and erasure (command and API), retention purged on a schedule, each in the
admin history; bad input changes nothing."""

import json
from datetime import time, timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db.models import Q
from django.test import Client
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule
from rest_framework.test import APIClient

from accounts.models import ApiKey, PhoneVerification, User
from accounts.services import api_key_create
from channels_app.models import PushSubscription
from notifications.engine import retention_purge
from notifications.engine.queue import RETENTION_SCHEDULE
from notifications.models import Delivery, InboxMessage, Notification, Preference, RecipientContext
from notifications.selectors import acknowledgement_counts, delivery_counts

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client, key_client

ENDPOINT = "https://fcm.googleapis.com/fcm/send/secret-capability-123"
PHONE = "+33612345678"


def run(name, *args):
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def person(student, cohort, staff_user, admin_user):
    """Ada, with everything the platform may hold about a person, and a classmate who keeps theirs."""
    student.phone, student.phone_verified_at = PHONE, timezone.now()
    student.quiet_hours_start, student.quiet_hours_end, student.language = time(22), time(7), "fr"
    student.institutional_id, student.sso_provider, student.roster_managed = "ada@example.edu", "saml", True
    student.save()
    classmate = User.objects.create_user("s1000002", email="grace@students.example.edu", password="pw",
                                         first_name="Grace")
    cohort.members.add(student, classmate)
    Preference.objects.create(user=student, category="grade", channel="sms", enabled=False)
    PhoneVerification.objects.create(user=student, phone=PHONE, code_hash="x" * 64,
                                     expires_at=timezone.now(), verified_at=timezone.now())
    PushSubscription.objects.create(user=student, endpoint=ENDPOINT, p256dh="p" * 87, auth="a" * 22,
                                    user_agent="Firefox")
    api_key_create(user=student, name="my script", scopes=["read_deliveries"])

    grades = Notification.objects.create(
        notifier="academic", category="grade", title="Your grade", body="Dear {{ first_name }}",
        channels=["email", "inbox"], audience={"users": [student.username, classmate.username]}, sender=admin_user,
        status=Notification.Status.SENDING, fanned_out_at=timezone.now(), recipient_count=2, requires_ack=True)
    later = Notification.objects.create(
        notifier="academic", category="timetable", title="Room change", body="B12", channels=["email"],
        audience={"cohorts": [cohort.code]}, sender=staff_user, status=Notification.Status.SENDING,
        fanned_out_at=timezone.now(), recipient_count=2)
    for user in (student, classmate):
        Delivery.objects.create(notification=grades, recipient=user, channel="email", status="failed",
                                provider_message_id="Postmark:abc", last_error=f"550 {user.email} unknown")
        Delivery.objects.create(notification=grades, recipient=user, channel="inbox", status="sent")
        InboxMessage.objects.create(notification=grades, recipient=user, title=f"{user.first_name}: your grade",
                                    body=f"Dear {user.first_name}, B+", category="grade",
                                    read_at=timezone.now(), acknowledged_at=timezone.now())
        RecipientContext.objects.create(notification=grades, recipient=user, context={"first_name": user.first_name,
                                                                                       "grade": "B+"})
        Delivery.objects.create(notification=later, recipient=user, channel="email", status="queued")
    return {"student": student, "classmate": classmate, "grades": grades, "later": later}


def counts(*notifications):
    return [(n.recipient_count, delivery_counts(n), acknowledgement_counts(n)) for n in notifications]


# --- export -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_it_exports_everything_held_about_a_person_by_command(person, admin_user, tmp_path):
    out = tmp_path / "ada.json"

    run("export_user", "s1000001", "--by", admin_user.username, "--output", str(out))

    data = json.loads(out.read_text())
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert data["profile"]["email"] == "s1000001@students.example.edu"
    assert (data["profile"]["first_name"], data["profile"]["phone"], data["profile"]["roles"]) == ("Ada", PHONE, ["User"])
    assert (data["profile"]["institutional_id"], data["profile"]["single_sign_on"]) == ("ada@example.edu", "saml")
    assert data["preferences"]["quiet_hours_start"] == "22:00:00" and data["preferences"]["language"] == "fr"
    assert data["preferences"]["channels"] == [{"category": "grade", "channel": "sms", "enabled": False,
                                                "digest": False}]
    assert data["phone_verification"]["verified_at"] and len(data["phone_verification"]["codes"]) == 1
    assert data["cohorts"] == {"member": [{"code": "cs101-2026", "name": "Computer Science 101"}], "manager": []}
    [push] = data["push_subscriptions"]
    assert push["host"] == "fcm.googleapis.com" and len(push["hash"]) == 8
    assert "secret-capability" not in out.read_text()  # an endpoint is a bearer capability
    [key] = data["api_keys"]
    assert key["name"] == "my script" and key["scopes"] == ["read_deliveries"] and "hashed_key" not in key
    assert ApiKey.objects.get().hashed_key not in out.read_text()
    assert sorted((d["notification_title"], d["channel"], d["status"]) for d in data["deliveries"]) == [
        ("Room change", "email", "queued"), ("Your grade", "email", "failed"), ("Your grade", "inbox", "sent")]
    assert [(m["title"], m["body"]) for m in data["inbox"]] == [("Ada: your grade", "Dear Ada, B+")]
    assert data["inbox"][0]["read_at"] and data["acknowledgements"][0]["notification"] == person["grades"].pk
    assert data["personalisation"] == [{"notification": person["grades"].pk,
                                        "context": {"first_name": "Ada", "grade": "B+"}}]
    assert "grace" not in out.read_text()  # nobody else's data
    entry = LogEntry.objects.get(object_id=str(person["student"].pk))
    assert entry.user == admin_user and entry.change_message.startswith("Exported personal data: 3 deliveries")


@pytest.mark.django_db
def test_it_exports_the_same_through_the_api_for_an_administrator(person, admin_user):
    response = jwt_client(admin_user).get(f"{API}users/s1000001/export/")

    assert response.status_code == 200
    data = response.json()
    assert data["profile"]["username"] == "s1000001" and len(data["deliveries"]) == 3
    assert ENDPOINT not in response.content.decode()
    assert LogEntry.objects.filter(object_id=str(person["student"].pk), user=admin_user,
                                   change_message__startswith="Exported").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", [("get", "export"), ("post", "erase")])
def test_it_answers_an_unknown_user_with_a_404_and_changes_nothing(method, path, admin_user):
    response = getattr(jwt_client(admin_user), method)(f"{API}users/nobody/{path}/")

    assert response.status_code == 404
    assert response.json() == {"status": 404, "code": "not_found", "message": "No user 'nobody'.", "errors": {}}
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("command", [["export_user"], ["erase_user", "--yes"]])
def test_it_refuses_an_unknown_user_by_command_naming_them(command, admin_user):
    with pytest.raises(CommandError, match="No user 'nobody'"):
        run(command[0], "nobody", "--by", admin_user.username, *command[1:])
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_it_refuses_an_acting_user_who_is_not_an_administrator(person, staff_user):
    with pytest.raises(CommandError, match="'t2000001' is not an active administrator"):
        run("erase_user", "s1000001", "--by", staff_user.username, "--yes")
    assert User.objects.get(pk=person["student"].pk).email == "s1000001@students.example.edu"
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", [("get", "export"), ("post", "erase")])
def test_it_refuses_staff_students_and_keys_before_looking_the_user_up(method, path, person, staff_user, admin_user):
    clients = [jwt_client(staff_user), jwt_client(person["student"]), key_client(admin_user, ["manage_users"])]
    for client in clients:
        for username in ("s1000001", "nobody"):
            response = getattr(client, method)(f"{API}users/{username}/{path}/")
            assert response.status_code == 403, response.json()
    assert APIClient().get(f"{API}users/s1000001/export/").status_code == 401
    assert User.objects.get(pk=person["student"].pk).is_active and not LogEntry.objects.exists()


# --- erasure ------------------------------------------------------------------------------

def assert_erased(person, admin_user, before):
    student = User.objects.get(pk=person["student"].pk)
    assert student.username == f"erased-{student.pk}"
    assert (student.first_name, student.last_name, student.email, student.phone) == ("", "", "", "")
    assert (student.institutional_id, student.sso_provider, student.roster_managed) == (None, "", False)
    assert not student.is_active and not student.has_usable_password() and student.auth_version > 0
    assert not student.groups.exists() and not student.cohorts.exists()
    for model in (Preference, PushSubscription, ApiKey, PhoneVerification):
        assert not model.objects.filter(user=student).exists(), model
    assert not RecipientContext.objects.filter(recipient=student).exists()
    # Rows kept: every notification counts as before, the pending delivery now cancelled (account inactive).
    grades, later = person["grades"], person["later"]
    assert counts(grades) == before[:1]
    assert delivery_counts(later) == {"email": {"queued": 1, "cancelled": 1}}
    assert Delivery.objects.get(notification=later, recipient=student).reason == "account_inactive"
    assert acknowledgement_counts(grades) == {"recipients": 2, "acknowledged": 2, "waiting": 0}
    # No personal data of theirs left in the related rows.
    for needle in ("s1000001", "Ada", "Lovelace", PHONE, "s1000001@students.example.edu"):
        assert not Delivery.objects.filter(recipient=student).filter(
            Q(last_error__contains=needle) | Q(provider_message_id__contains=needle)
            | Q(skip_reason__contains=needle)).exists()
        assert not InboxMessage.objects.filter(recipient=student).filter(
            Q(title__contains=needle) | Q(body__contains=needle)).exists()
        assert not LogEntry.objects.filter(Q(object_repr__contains=needle) | Q(change_message__contains=needle)).exists()
        assert not Notification.objects.filter(audience__icontains=needle).exists()
    assert "s1000001@students.example.edu" not in json.dumps(list(User.objects.values()), default=str)
    assert Notification.objects.get(pk=grades.pk).audience == {"users": [student.username, "s1000002"]}
    # The classmate keeps everything.
    classmate = person["classmate"]
    assert InboxMessage.objects.get(recipient=classmate).body == "Dear Grace, B+"
    assert Delivery.objects.get(recipient=classmate, channel="email", notification=grades).last_error
    entry = LogEntry.objects.get(object_id=str(student.pk), change_message__startswith="Erased")
    assert entry.user == admin_user and entry.object_repr == student.username
    return student


@pytest.mark.django_db
def test_it_erases_a_person_by_command_and_the_counts_stay_true(person, admin_user):
    before = counts(person["grades"], person["later"])
    token = jwt_client(person["student"])
    assert token.get(f"{API}me/inbox/").status_code == 200
    session = Client()
    session.force_login(person["student"])
    assert session.get("/inbox/").status_code == 200

    out = run("erase_user", "s1000001", "--by", admin_user.username, "--yes")

    student = assert_erased(person, admin_user, before)
    assert f"Erased s1000001, now {student.username}: 3 deliveries and 1 inbox messages anonymised" in out
    assert token.get(f"{API}me/inbox/").status_code == 401  # every token ended
    assert session.get("/inbox/").status_code == 302  # and every session
    for username in ("s1000001", student.username):
        signin = APIClient().post(f"{API}auth/token/", {"username": username, "password": "pw-s1000001"},
                                  format="json")
        assert signin.status_code == 401
    assert not APIClient().login(username="s1000001", password="pw-s1000001")


@pytest.mark.django_db
def test_it_erases_through_the_api_for_an_administrator(person, admin_user):
    before = counts(person["grades"], person["later"])

    response = jwt_client(admin_user).post(f"{API}users/s1000001/erase/")

    assert response.status_code == 200
    student = assert_erased(person, admin_user, before)
    assert response.json() == {"username": student.username, "deliveries": 3, "deliveries_cancelled": 1,
                                "inbox_messages": 1, "sms_replies": 0, "push_subscriptions": 1, "api_keys": 1,
                                "audiences": 1, "ledger_entries_kept": 0}
    detail = jwt_client(admin_user).get(f"{API}notifications/{person['grades'].pk}/").json()
    assert (detail["recipient_count"], detail["delivery_counts"]) == (2, {"email": {"failed": 2}, "inbox": {"sent": 2}})


@pytest.mark.django_db
def test_it_refuses_an_erasure_without_confirmation(person, admin_user):
    with pytest.raises(CommandError, match="add --yes to confirm"):
        run("erase_user", "s1000001", "--by", admin_user.username)

    student = User.objects.get(pk=person["student"].pk)
    assert student.username == "s1000001" and student.is_active and student.email
    assert PushSubscription.objects.filter(user=student).exists() and not LogEntry.objects.exists()


@pytest.mark.django_db
def test_it_refuses_an_administrator_erasing_themselves(admin_user):
    response = jwt_client(admin_user).post(f"{API}users/{admin_user.username}/erase/")

    assert response.status_code == 400
    assert "your own account" in response.json()["errors"]["username"][0]
    assert User.objects.get(pk=admin_user.pk).is_active


@pytest.mark.django_db
def test_it_exports_an_erased_person_as_the_anonymous_account(person, admin_user):
    run("erase_user", "s1000001", "--by", admin_user.username, "--yes")
    student = User.objects.get(pk=person["student"].pk)

    data = json.loads(run("export_user", student.username, "--by", admin_user.username))

    assert data["profile"]["email"] == "" and data["push_subscriptions"] == [] and data["api_keys"] == []
    assert {m["title"] for m in data["inbox"]} == {"(erased)"}


# --- retention ----------------------------------------------------------------------------

def age(queryset, days):
    queryset.update(created_at=timezone.now() - timedelta(days=days))


@pytest.mark.django_db
def test_it_purges_by_the_retention_settings_in_batches(person, settings):
    settings.RETENTION_DELIVERY_DAYS, settings.RETENTION_INBOX_DAYS = "30", "90"
    grades = person["grades"]
    age(Delivery.objects.filter(notification=grades), 40)
    age(InboxMessage.objects.filter(recipient=person["student"]), 100)
    age(InboxMessage.objects.filter(recipient=person["classmate"]), 60)

    done = retention_purge(batch_size=1)

    assert done == {"deliveries": 4, "inbox_messages": 1, "ledger_entries": 0}
    assert not Delivery.objects.filter(notification=grades).exists()
    assert Delivery.objects.filter(notification=person["later"]).count() == 2  # recent, and pending ones never
    assert list(InboxMessage.objects.values_list("recipient", flat=True)) == [person["classmate"].pk]
    assert retention_purge() == {"deliveries": 0, "inbox_messages": 0, "ledger_entries": 0}


@pytest.mark.django_db
def test_it_keeps_everything_with_a_retention_of_zero(person, settings):
    settings.RETENTION_DELIVERY_DAYS, settings.RETENTION_INBOX_DAYS = "0", "0"
    age(Delivery.objects.all(), 5000)
    age(InboxMessage.objects.all(), 5000)

    assert retention_purge() == {"deliveries": 0, "inbox_messages": 0, "ledger_entries": 0}
    assert Delivery.objects.count() == 6 and InboxMessage.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["a year", "-1", "1.5"])
def test_it_refuses_a_retention_that_is_not_a_number_and_purges_nothing(value, person, settings):
    settings.RETENTION_DELIVERY_DAYS, settings.RETENTION_INBOX_DAYS = "30", value
    age(Delivery.objects.all(), 5000)
    age(InboxMessage.objects.all(), 5000)

    errors = [e for e in run_checks() if e.id == "flashnotify.E013"]
    with pytest.raises(CommandError, match="RETENTION_INBOX_DAYS.*Nothing was deleted"):
        run("purge_deliveries")

    assert [e.msg for e in errors] == [f"RETENTION_INBOX_DAYS={value!r} is not a whole number of days "
                                       "(0 keeps forever)."]
    assert "RETENTION_INBOX_DAYS to a whole number of days" in errors[0].hint
    assert Delivery.objects.count() == 6 and InboxMessage.objects.count() == 2


@pytest.mark.django_db
def test_it_runs_the_retention_purge_on_a_daily_schedule_and_by_hand(person, settings, caplog):
    settings.RETENTION_DELIVERY_DAYS, settings.RETENTION_INBOX_DAYS = "30", "0"
    age(Delivery.objects.filter(notification=person["grades"]), 40)
    schedule = Schedule.objects.get(name=RETENTION_SCHEDULE)

    with caplog.at_level("INFO", logger="notifications.engine.retention"):
        done = import_string(schedule.func)()  # what the worker runs when the schedule is due
    out = run("purge_deliveries")

    assert (schedule.schedule_type, schedule.repeats) == (Schedule.DAILY, -1)
    assert schedule.next_run > timezone.now()  # not at once on a fresh install
    assert done == {"deliveries": 4, "inbox_messages": 0, "ledger_entries": 0}
    # No person acts: the run is in the application log (and django-q2's task result), not the admin history.
    assert "retention purge: 4 deliveries older than 30 days, 0 inbox messages older than ∞ days" in caplog.text
    assert not LogEntry.objects.exists()
    assert "Deleted 0 deliveries and 0 inbox messages past their retention." in out  # a rerun finds nothing
    assert InboxMessage.objects.count() == 2


@pytest.mark.parametrize("name", ["export_user", "erase_user"])
def test_it_has_help_with_examples(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        call_command(name, "--help")
    assert exit_.value.code == 0
    assert "examples:" in capsys.readouterr().out
