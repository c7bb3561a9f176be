"""Who a notification reaches: cohorts, users, roles, everyone — and who may ask for which."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey, Cohort, Role, User
from channels_app.models import PushSubscription
from notifications.models import Delivery, Preference
from notifications.selectors import audience_users
from notifications.engine import notification_fan_out
from notifications.services import notification_send

from .conftest import make_user

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.timezone.utc)


def send(sender, audience, **fields):
    fields = {"notifier": "academic", "category": "announcement", "title": "Lecture moved",
              "body": "Room B12 from now on.", "channels": ["email", "inbox"], **fields}
    notification, _ = notification_send(sender=sender, audience=audience, **fields)
    return notification_fan_out(notification.pk, now=NOW)


@pytest.fixture
def cohorts(db, staff_user):
    cs101 = Cohort.objects.create(code="cs101", name="CS 101")
    ma201 = Cohort.objects.create(code="ma201", name="Maths 201")
    cs101.managers.add(staff_user)
    both = make_user("s1", first_name="Both")
    only_cs = make_user("s2")
    only_ma = make_user("s3")
    gone = make_user("s4", is_active=False)
    cs101.members.add(both, only_cs, gone)
    ma201.members.add(both, only_ma)
    return {"cs101": cs101, "ma201": ma201, "both": both, "only_cs": only_cs, "only_ma": only_ma, "gone": gone}


def test_it_delivers_once_per_channel_to_a_student_in_two_targeted_cohorts(cohorts, admin_user):
    notification = send(admin_user, {"cohorts": ["cs101", "ma201"]})

    rows = list(Delivery.objects.filter(notification=notification).values_list("recipient__username", "channel"))
    assert sorted(rows) == sorted((u, c) for u in ("s1", "s2", "s3") for c in ("email", "inbox"))
    assert notification.recipient_count == 3


def test_it_skips_inactive_accounts_and_says_so_for_those_named(cohorts, admin_user):
    notification = send(admin_user, {"cohorts": ["cs101"], "users": ["s4"]})

    gone = Delivery.objects.filter(notification=notification, recipient=cohorts["gone"])
    assert set(gone.values_list("channel", "status", "reason")) == {
        ("email", "skipped", "account_inactive"), ("inbox", "skipped", "account_inactive")}
    reached = Delivery.objects.filter(notification=notification).exclude(status="skipped")
    assert set(reached.values_list("recipient__username", flat=True)) == {"s1", "s2"}
    notification.refresh_from_db()
    assert notification.recipient_count == 2  # the audience: active users


def test_it_records_the_audience_as_it_was_asked(cohorts, admin_user):
    notification = send(admin_user, {"cohorts": ["ma201", "cs101", "cs101"], "users": ["s3", "s2"]})

    notification.refresh_from_db()
    assert notification.audience == {"cohorts": ["cs101", "ma201"], "users": ["s2", "s3"]}
    assert set(notification.cohorts.values_list("code", flat=True)) == {"cs101", "ma201"}


def test_it_expands_users_roles_and_everyone(cohorts, admin_user, staff_user):
    assert set(audience_users({"users": ["s3", "nobody"]}).values_list("username", flat=True)) == {"s3"}
    assert set(audience_users({"roles": [Role.STAFF]}).values_list("username", flat=True)) == {staff_user.username}
    everyone = set(audience_users({"everyone": True}).values_list("username", flat=True))
    assert everyone == {"s1", "s2", "s3", staff_user.username, admin_user.username}
    mixed = audience_users({"roles": [Role.STAFF], "cohorts": ["ma201"], "users": ["s2"]})
    assert sorted(mixed.values_list("username", flat=True)) == sorted(["s1", "s2", "s3", staff_user.username])


def test_a_page_of_the_audience_is_its_range_of_every_kind_of_member(cohorts, admin_user, staff_user):
    """A fan-out page (after_pk < pk <= last_pk) narrows the cohort and role subqueries too: the same users as
    the whole audience cut to the range, each once."""
    audience = {"roles": [Role.STAFF], "cohorts": ["cs101", "ma201"], "users": ["s3"]}
    everyone = list(audience_users(audience).order_by("pk").values_list("pk", flat=True))
    assert len(everyone) == 4  # s1 (in both cohorts), s2, s3 and the staff member; s4 is inactive
    bounds = sorted({0} | {pk - 1 for pk in everyone} | set(everyone))  # every way a range can cut them
    for after_pk in bounds:
        for last_pk in (pk for pk in bounds if pk >= after_pk):
            page = audience_users(audience, after_pk=after_pk, last_pk=last_pk).order_by("pk")
            assert list(page.values_list("pk", flat=True)) == [pk for pk in everyone if after_pk < pk <= last_pk]
    with CaptureQueriesContext(connection) as queries:
        list(audience_users(audience, after_pk=everyone[0], last_pk=everyone[-1]))
    sql = queries.captured_queries[0]["sql"]
    # Each membership subquery reads only the page's range of members, not the whole cohort or role.
    assert sql.count(f'"user_id" > {everyone[0]}') == 2 and sql.count(f'"user_id" <= {everyone[-1]}') == 2


def test_it_refuses_staff_a_cohort_they_do_not_manage(cohorts, staff_user):
    with pytest.raises(PermissionDenied, match="ma201"):
        send(staff_user, {"cohorts": ["cs101", "ma201"]})
    with pytest.raises(PermissionDenied, match="s3"):
        send(staff_user, {"users": ["s3"]})
    with pytest.raises(PermissionDenied):
        send(staff_user, {"everyone": True})
    assert not Delivery.objects.exists()


def test_it_lets_staff_send_to_their_cohort_and_its_members(cohorts, staff_user):
    notification = send(staff_user, {"cohorts": ["cs101"], "users": ["s1"]})

    assert Delivery.objects.filter(notification=notification).count() == 4


def test_it_lets_an_admin_send_to_anyone(cohorts, admin_user):
    notification = send(admin_user, {"everyone": True})

    assert notification.recipient_count == 5


def test_it_holds_an_api_key_to_its_cohorts(cohorts, staff_user):
    integration = make_user("lms", role=Role.API_USER)
    cohorts["ma201"].managers.add(integration)
    key = ApiKey.objects.create(user=integration, name="LMS", prefix="abcd1234", hashed_key=ApiKey.hash("x"))
    key.cohorts.add(cohorts["ma201"])

    notification, _ = notification_send(sender=integration, api_key=key, notifier="academic", title="t", body="b",
                                        audience={"cohorts": ["ma201"]})
    assert notification.pk
    with pytest.raises(PermissionDenied, match="cs101"):
        notification_send(sender=integration, api_key=key, notifier="academic", title="t", body="b",
                          audience={"cohorts": ["cs101"]})


def test_it_holds_an_admins_api_key_to_its_cohorts(cohorts, admin_user):
    key = ApiKey.objects.create(user=admin_user, name="Script", prefix="efgh5678", hashed_key=ApiKey.hash("y"))
    key.cohorts.add(cohorts["cs101"])

    with pytest.raises(PermissionDenied):
        notification_send(sender=admin_user, api_key=key, notifier="academic", title="t", body="b",
                          audience={"everyone": True})


def test_it_refuses_an_unknown_cohort_or_role_with_a_clear_error(cohorts, admin_user):
    with pytest.raises(ValidationError) as error:
        send(admin_user, {"cohorts": ["nope"], "roles": ["Wizards"]})
    assert "Unknown cohort(s): nope." in error.value.message_dict["audience"]
    assert "Unknown role(s): Wizards." in error.value.message_dict["audience"]


def test_it_plans_a_chunk_in_a_fixed_number_of_queries(db, admin_user, settings):
    settings.FANOUT_CHUNK_SIZE = 1000
    cohort = Cohort.objects.create(code="big", name="Big")

    def fan_out_queries(count, offset):
        users = User.objects.bulk_create(
            User(username=f"u{offset + n}", email=f"u{offset + n}@example.edu", phone=f"+3361234{offset + n:04d}",
                 phone_verified_at=NOW) for n in range(count))
        users = list(User.objects.filter(username__in=[u.username for u in users]))
        cohort.members.set(users)
        PushSubscription.objects.bulk_create(
            PushSubscription(user=u, endpoint=f"https://push.example/{u.pk}", p256dh="k", auth="a") for u in users[::2])
        Preference.objects.bulk_create(
            Preference(user=u, category="grade", channel="sms", enabled=True) for u in users[::3])
        notification, _ = notification_send(sender=admin_user, notifier="academic", category="grade", title="t",
                                            body="b", audience={"cohorts": ["big"]})
        with CaptureQueriesContext(connection) as queries:
            notification_fan_out(notification.pk, now=NOW)
        # bulk_create splits its INSERT by the database's parameter limit (SQLite: 999): count the rest.
        reads_and_updates = [q for q in queries.captured_queries if "INSERT" not in q["sql"]]
        return len(reads_and_updates), Delivery.objects.filter(notification=notification).count()

    small_queries, small_rows = fan_out_queries(5, 0)
    large_queries, large_rows = fan_out_queries(60, 100)

    assert large_rows > small_rows
    assert large_queries == small_queries
