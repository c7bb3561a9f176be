"""Who may enter the console and what each role sees there."""

import pytest

from accounts.models import Role
from notifications.models import Delivery

from .conftest import make_user
from .console_helpers import sent_notification, two_cohorts


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.USER, Role.API_USER])
def test_it_refuses_users_and_api_users_even_when_flagged_staff(client, role):
    user = make_user("x9000001", role=role, is_staff=True)
    client.force_login(user)

    response = client.get("/admin/")

    assert response.status_code == 302 and "/admin/login/" in response.url
    assert client.get("/admin/notifications/notification/").status_code == 302


@pytest.mark.django_db
def test_it_refuses_a_staff_role_without_the_staff_flag(client):
    user = make_user("t9000001", role=Role.STAFF, is_staff=False)
    client.force_login(user)
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_it_lets_admin_and_staff_in_with_the_console_links(client, staff_user, admin_user):
    for user in (staff_user, admin_user):
        client.force_login(user)
        response = client.get("/admin/")
        assert response.status_code == 200
        assert b"Compose a notification" in response.content
        assert b"Channel health" in response.content
    assert b"Import users from CSV" in response.content  # the admin only


@pytest.mark.django_db
def test_it_shows_staff_only_their_cohorts_notifications(client, staff_user, admin_user):
    mine, theirs, other_staff = two_cohorts(staff_user)
    own = sent_notification(mine, other_staff, title="To my cohort")
    foreign = sent_notification(theirs, other_staff, title="To another cohort")
    client.force_login(staff_user)

    listing = client.get("/admin/notifications/notification/")
    assert listing.status_code == 200
    assert b"To my cohort" in listing.content and b"To another cohort" not in listing.content
    assert client.get(f"/admin/notifications/notification/{own.pk}/change/").status_code == 200
    assert client.get(f"/admin/notifications/notification/{foreign.pk}/change/").status_code == 404
    assert client.get(f"/admin/notifications/notification/{foreign.pk}/progress.json").status_code == 404
    deliveries = client.get("/admin/notifications/delivery/")
    assert deliveries.context["cl"].result_count == 2

    client.force_login(admin_user)
    assert client.get(f"/admin/notifications/notification/{foreign.pk}/change/").status_code == 200
    assert client.get("/admin/notifications/delivery/").context["cl"].result_count == 4


@pytest.mark.django_db
def test_it_scopes_users_cohorts_and_the_compose_choices_for_staff(client, staff_user):
    mine, theirs, _ = two_cohorts(staff_user)
    client.force_login(staff_user)

    cohorts = client.get("/admin/accounts/cohort/")
    assert [c.code for c in cohorts.context["cl"].result_list] == ["cs101"]
    users = client.get("/admin/accounts/user/")
    assert sorted(u.username for u in users.context["cl"].result_list) == ["s1000001", "s1000002", "t2000001"]
    assert client.get(f"/admin/accounts/cohort/{theirs.pk}/change/").status_code == 302  # absent: "does not exist"

    compose = client.get("/admin/notifications/notification/add/")
    form = compose.context["form"]
    assert list(form.fields["cohorts"].queryset) == [mine]
    assert "roles" not in form.fields and "everyone" not in form.fields


@pytest.mark.django_db
def test_it_refuses_a_staff_action_on_another_cohorts_notification(client, staff_user):
    mine, theirs, other_staff = two_cohorts(staff_user)
    foreign = sent_notification(theirs, other_staff, statuses=("failed", "failed"))
    client.force_login(staff_user)

    client.post("/admin/notifications/notification/", {"action": "retry_failed", "_selected_action": [foreign.pk],
                                                        "index": 0})

    assert set(foreign.deliveries.values_list("status", flat=True)) == {"failed"}


@pytest.mark.django_db
def test_it_refuses_the_user_import_to_staff(client, staff_user):
    client.force_login(staff_user)
    assert client.get("/admin/accounts/user/import/").status_code == 403


def widen(notification, audience, *cohorts):
    """Give `notification` a wider audience, with a failed delivery to each extra cohort's members."""
    notification.audience = audience
    notification.save(update_fields=["audience"])
    for cohort in cohorts:
        notification.cohorts.add(cohort)
        for member in cohort.members.all():
            Delivery.objects.create(notification=notification, recipient=member, channel="email", status="failed")
    return notification


@pytest.mark.django_db
def test_it_shows_staff_only_notifications_whose_whole_audience_they_manage(client, staff_user, admin_user):
    mine, theirs, _ = two_cohorts(staff_user)
    both = widen(sent_notification(mine, admin_user, title="To both cohorts", statuses=("failed", "failed")),
                 {"cohorts": [mine.code, theirs.code]}, theirs)
    role = widen(sent_notification(mine, admin_user, title="To my cohort and every teacher"),
                 {"cohorts": [mine.code], "roles": [Role.STAFF]})
    outsider = widen(sent_notification(mine, admin_user, title="To my cohort and a maths student"),
                     {"cohorts": [mine.code], "users": ["s1000003"]})
    insider = widen(sent_notification(mine, admin_user, title="To my cohort and one of its students"),
                    {"cohorts": [mine.code], "users": ["s1000001"]})
    client.force_login(staff_user)

    listing = client.get("/admin/notifications/notification/")
    deliveries = client.get("/admin/notifications/delivery/")
    client.post("/admin/notifications/notification/", {"action": "retry_failed", "_selected_action": [both.pk],
                                                        "index": 0})

    assert [n.title for n in listing.context["cl"].result_list] == [insider.title]
    for hidden in (both, role, outsider):
        assert client.get(f"/admin/notifications/notification/{hidden.pk}/change/").status_code == 404
        assert client.get(f"/admin/notifications/notification/{hidden.pk}/progress.json").status_code == 404
    assert client.get(f"/admin/notifications/notification/{insider.pk}/change/").status_code == 200
    assert {d.notification_id for d in deliveries.context["cl"].result_list} == {insider.pk}
    assert set(both.deliveries.values_list("status", flat=True)) == {"failed"}
