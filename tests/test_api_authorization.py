"""Who may call what: every route refuses anonymous callers unless listed as public, and every role
against every endpoint, with other users' objects answering 404."""

import re

import pytest
from django.contrib.auth.models import Group
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from accounts.models import ApiKey, Cohort, Role
from notifications.models import InboxMessage, Notification
from flashnotify.api_urls import PUBLIC_PATHS
from notifications.services import notification_send

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client, key_client, send_body
from .conftest import make_user
from .delivery_helpers import BrowserKeys

METHODS = ("get", "post", "put", "patch", "delete")


def _walk(patterns, prefix=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$").replace("\\Z", "").replace("\\/", "/")
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def _concrete(route):
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    return re.sub(r"<(?:\w+:)?\w+>", "1", route)


def api_routes():
    return sorted({_concrete(r) for r in _walk(get_resolver().url_patterns) if r.startswith("api/v1/")})


def test_it_finds_the_api_routes():
    routes = api_routes()
    assert "api/v1/notifications/" in routes and "api/v1/notifications/1/cancel/" in routes
    assert len(routes) > 20
    for public in PUBLIC_PATHS:  # no stale entry keeps a hole open
        assert any(route.startswith("api/v1/" + public) for route in routes), public


@pytest.mark.django_db
def test_it_refuses_every_unlisted_route_without_authentication():
    client = APIClient()
    open_routes = []
    for route in api_routes():
        if route.startswith(tuple("api/v1/" + p for p in PUBLIC_PATHS)):
            continue
        for method in METHODS:
            response = getattr(client, method)("/" + route, {}, format="json")
            if response.status_code != 401:
                open_routes.append(f"{method.upper()} /{route} -> {response.status_code}")
    assert open_routes == []


ROLES = ["anonymous", "student", "staff", "api_user", "admin", "key_send", "key_read", "key_manage"]

# endpoint: (method, path, body, {role: status}); roles not named get `other`.
BROWSER = BrowserKeys()  # what a browser makes when it subscribes to web push
ENDPOINTS = {
    "notifications.list": ("get", "notifications/", None,
                           dict(staff=200, api_user=200, admin=200, key_read=200, other=403)),
    "notifications.create": ("post", "notifications/", send_body(),
                             dict(staff=201, api_user=403, admin=201, key_send=201, other=403)),
    "notifications.retrieve": ("get", "notifications/{cs}/", None,
                               dict(staff=200, api_user=404, admin=200, key_read=200, other=403)),
    "notifications.retrieve_other_cohort": ("get", "notifications/{math}/", None,
                                            dict(staff=404, api_user=404, admin=200, key_read=200, other=403)),
    "notifications.cancel": ("post", "notifications/{cs}/cancel/", None,
                             dict(staff=200, admin=200, key_send=200, other=403)),
    "notifications.deliveries": ("get", "notifications/{cs}/deliveries/", None,
                                 dict(staff=200, api_user=404, admin=200, key_read=200, other=403)),
    "notifications.preview": ("get", "notifications/{cs}/preview/", None,
                              dict(staff=200, api_user=404, admin=200, key_read=200, other=403)),
    "inbox.list": ("get", "me/inbox/", None, dict(student=200, staff=200, api_user=200, admin=200, other=403)),
    "inbox.retrieve": ("get", "me/inbox/{message}/", None,
                       dict(student=200, staff=404, api_user=404, admin=404, other=403)),
    "inbox.read": ("post", "me/inbox/{message}/read/", None,
                   dict(student=200, staff=404, api_user=404, admin=404, other=403)),
    "inbox.ack": ("post", "me/inbox/{message}/ack/", None,
                  dict(student=200, staff=404, api_user=404, admin=404, other=403)),
    "preferences.get": ("get", "me/preferences/", None,
                        dict(student=200, staff=200, api_user=200, admin=200, other=403)),
    "preferences.patch": ("patch", "me/preferences/",
                          {"preferences": [{"category": "grade", "channel": "sms", "enabled": False}]},
                          dict(student=200, staff=200, api_user=200, admin=200, other=403)),
    "push.subscribe": ("post", "me/push-subscriptions/",
                       {"endpoint": "https://fcm.googleapis.com/fcm/send/abc",
                        "keys": {"p256dh": BROWSER.p256dh, "auth": BROWSER.auth}},
                       dict(student=201, staff=201, api_user=201, admin=201, other=403)),
    "push.unsubscribe": ("delete", "me/push-subscriptions/?endpoint=https://push.example.test/none", None,
                         dict(student=404, staff=404, api_user=404, admin=404, other=403)),
    "cohorts.list": ("get", "cohorts/", None,
                     dict(staff=200, api_user=200, admin=200, key_send=200, key_manage=200, other=403)),
    "cohorts.retrieve": ("get", "cohorts/cs101-2026/", None,
                         dict(staff=200, api_user=404, admin=200, key_send=200, key_manage=200, other=403)),
    "cohorts.members": ("get", "cohorts/cs101-2026/members/", None,
                        dict(staff=200, api_user=404, admin=200, key_manage=200, other=403)),
    "cohorts.members_other": ("get", "cohorts/math200-2026/members/", None,
                              dict(staff=404, api_user=404, admin=200, key_manage=200, other=403)),
    "cohorts.create": ("post", "cohorts/", {"code": "new-cohort", "name": "New"},
                       dict(admin=201, key_manage=201, other=403)),
    "users.upsert": ("post", "users/", {"users": [{"username": "s9000001", "email": "n@example.edu"}]},
                     dict(admin=200, key_manage=200, other=403)),
    "users.export": ("get", "users/s1000001/export/", None, dict(admin=200, other=403)),
    "users.export_unknown": ("get", "users/nobody/export/", None, dict(admin=404, other=403)),
    "users.erase": ("post", "users/s1000001/erase/", None, dict(admin=200, other=403)),
    "metrics": ("get", "metrics/", None, dict(staff=200, admin=200, key_read=200, other=403)),
    # An academic notification has no incident to follow up or publish: 409 for whoever may send emergency alerts.
    "notifications.follow_ups": ("post", "notifications/{cs}/follow-ups/",
                                 {"kind": "update", "title": "Update", "body": "Stay away."},
                                 dict(admin=409, key_send=409, other=403)),
    "notifications.publish": ("post", "notifications/{cs}/publish/", {"public": True},
                              dict(admin=409, key_send=409, other=403)),
    "api_keys.list": ("get", "api-keys/", None, dict(staff=200, api_user=200, admin=200, other=403)),
    "api_keys.create": ("post", "api-keys/", {"name": "x", "scopes": ["send"]},
                        dict(staff=201, api_user=201, admin=201, other=403)),
}


@pytest.fixture
def world(db, student, staff_user, admin_user, cohort, other_cohort):
    cohort.members.add(student)
    n_cs, _ = notification_send(sender=admin_user, notifier="academic", category="timetable", title="CS",
                                body="cs body", channels=["email", "inbox"], audience={"cohorts": [cohort.code]})
    n_math, _ = notification_send(sender=admin_user, notifier="academic", category="timetable", title="Math",
                                  body="math body", channels=["inbox"], audience={"cohorts": [other_cohort.code]})
    message = InboxMessage.objects.create(notification=n_cs, recipient=student, title="CS", body="cs body",
                                          category="timetable")
    return {"cs": n_cs.pk, "math": n_math.pk, "message": message.pk}


def client_for(role, student, staff_user, admin_user):
    if role == "anonymous":
        return APIClient()
    if role == "student":
        return jwt_client(student)
    if role == "staff":
        return jwt_client(staff_user)
    if role == "api_user":
        return jwt_client(make_user("i4000001", role=Role.API_USER))
    if role == "admin":
        return jwt_client(admin_user)
    scope = {"key_send": "send", "key_read": "read_deliveries", "key_manage": "manage_users"}[role]
    return key_client(admin_user, [scope])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_it_answers_each_role_as_its_rights_allow(endpoint, role, world, student, staff_user, admin_user, push_dns):
    method, path, body, expected = ENDPOINTS[endpoint]
    client = client_for(role, student, staff_user, admin_user)
    response = getattr(client, method)(API + path.format(**world), body, format="json")
    want = 401 if role == "anonymous" else expected.get(role, expected["other"])
    assert response.status_code == want, (endpoint, role, response.json())
    if want >= 400:
        assert set(response.json()) == {"status", "code", "message", "errors"}
        assert "cs body" not in response.content.decode()


def test_it_limits_a_staff_key_to_its_cohorts(staff_user, cohort, other_cohort):
    other_cohort.managers.add(staff_user)
    client = key_client(staff_user, ["send", "read_deliveries"], cohorts=[cohort])
    assert client.post(f"{API}notifications/", send_body(), format="json").status_code == 201
    refused = client.post(f"{API}notifications/", send_body(audience={"cohorts": [other_cohort.code]}),
                          format="json")
    assert refused.status_code == 403
    assert "math200-2026" in refused.json()["message"]
    mine = jwt_client(staff_user).post(f"{API}notifications/", send_body(audience={"cohorts": [other_cohort.code]}),
                                       format="json")
    assert mine.status_code == 201
    listed = client.get(f"{API}notifications/").json()["results"]
    assert [n["audience"] for n in listed] == [{"cohorts": ["cs101-2026"]}]


def test_it_refuses_staff_sending_outside_their_cohorts(staff_user, cohort, other_cohort):
    response = jwt_client(staff_user).post(f"{API}notifications/", send_body(audience={"everyone": True}),
                                           format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert ApiKey.objects.count() == 0 and Cohort.objects.count() == 2


def test_it_limits_an_administrators_key_to_its_cohorts_too(admin_user, cohort, other_cohort):
    client = key_client(admin_user, ["send"], cohorts=[cohort])
    assert client.post(f"{API}notifications/", send_body(), format="json").status_code == 201
    for audience in ({"cohorts": [other_cohort.code]}, {"everyone": True}):
        assert client.post(f"{API}notifications/", send_body(audience=audience), format="json").status_code == 403


def test_it_stops_a_key_at_a_cohort_its_owner_no_longer_manages(staff_user, cohort, other_cohort, members):
    other_cohort.managers.add(staff_user)
    key = key_client(staff_user, ["send"], cohorts=[cohort, other_cohort])
    assert key.post(f"{API}notifications/", send_body(), format="json").status_code == 201

    cohort.managers.remove(staff_user)

    assert jwt_client(staff_user).post(f"{API}notifications/", send_body(), format="json").status_code == 403
    refused = key.post(f"{API}notifications/", send_body(), format="json")
    assert refused.status_code == 403
    assert "cs101-2026" in refused.json()["message"]
    by_name = key.post(f"{API}notifications/", send_body(audience={"users": [members[0].username]}), format="json")
    assert by_name.status_code == 403
    still = key.post(f"{API}notifications/", send_body(audience={"cohorts": [other_cohort.code]}), format="json")
    assert still.status_code == 201
    assert Notification.objects.count() == 2  # the first to cs101-2026, the last to math200-2026


def test_it_stops_an_administrators_key_when_they_are_no_longer_one(admin_user, cohort, other_cohort):
    key = key_client(admin_user, ["send"], cohorts=[cohort])
    assert key.post(f"{API}notifications/", send_body(), format="json").status_code == 201

    admin_user.is_superuser = False
    admin_user.save()
    admin_user.groups.set([Group.objects.get(name=Role.STAFF)])
    other_cohort.managers.add(admin_user)

    assert key.post(f"{API}notifications/", send_body(), format="json").status_code == 403
    assert key.post(f"{API}notifications/", send_body(audience={"everyone": True}), format="json").status_code == 403


def test_it_answers_staff_only_for_notifications_whose_whole_audience_they_manage(staff_user, admin_user, members,
                                                                                  other_cohort):
    def send(audience):
        notification, _ = notification_send(sender=admin_user, notifier="academic", category="timetable",
                                            title="Room change", body="B12", channels=["inbox"], audience=audience)
        return notification

    both = send({"cohorts": ["cs101-2026", other_cohort.code]})
    inside = send({"cohorts": ["cs101-2026"], "users": [members[0].username]})
    client = jwt_client(staff_user)

    listed = client.get(f"{API}notifications/").json()["results"]
    answers = [client.get(f"{API}notifications/{both.pk}/"), client.get(f"{API}notifications/{both.pk}/deliveries/"),
               client.post(f"{API}notifications/{both.pk}/cancel/")]

    assert [n["id"] for n in listed] == [inside.pk]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert client.get(f"{API}notifications/{inside.pk}/deliveries/").status_code == 200
    both.refresh_from_db()
    assert both.status != "cancelled"


def test_it_answers_a_key_limited_to_a_cohort_only_for_notifications_wholly_within_it(admin_user, cohort, other_cohort):
    def send(cohorts):
        notification, _ = notification_send(sender=admin_user, notifier="academic", category="timetable",
                                            title="Room change", body="B12", channels=["inbox"],
                                            audience={"cohorts": cohorts})
        return notification

    both = send([cohort.code, other_cohort.code])
    inside = send([cohort.code])
    key = key_client(admin_user, ["read_deliveries"], cohorts=[cohort])

    listed = key.get(f"{API}notifications/").json()["results"]

    assert [n["id"] for n in listed] == [inside.pk]
    assert key.get(f"{API}notifications/{both.pk}/deliveries/").status_code == 404
