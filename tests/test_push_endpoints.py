"""Web push posts only to browsers' push services: endpoints and keys are checked on every door, the
address again just before each push, and endpoints (bearer capabilities) are not shown or logged."""

import base64
import json
import logging

import pytest
from django.test import Client

from channels_app.models import PushSubscription
from notifications.models import Delivery

from .api_support import API, jwt_client
from .conftest import make_user
from .delivery_helpers import BrowserKeys, closed_breakers  # noqa: F401
from .test_channels import send, vapid  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("closed_breakers")]


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def body(endpoint, keys=None):
    keys = keys or BrowserKeys()
    return {"endpoint": endpoint, "keys": {"p256dh": keys.p256dh, "auth": keys.auth}}


def page_client(user):
    client = Client()
    client.force_login(user)
    return client


def subscribe_on_page(client, payload):
    return client.post("/push/subscriptions/", data=json.dumps(payload), content_type="application/json")


def subscribe_on_api(client, payload):
    return client.post(f"{API}me/push-subscriptions/", payload, format="json")


DOORS = {"page": (page_client, subscribe_on_page), "api": (jwt_client, subscribe_on_api)}

REFUSED_ENDPOINTS = [
    "https://127.0.0.1:8443/push/x",
    "https://localhost:8443/push/x",
    "https://internal.fcm.example:8443/push/x",  # a name that resolves to 127.0.0.1 (allowed by the setting)
    "https://fcm.googleapis.com/fcm/send/x",  # an allowed host that resolves to a private address here
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/push/x",
    "https://example.com/x",
    "https://fcm.googleapis.com.attacker.example/x",
    "https://user:password@updates.push.services.mozilla.com/wpush/v2/x",
    "http://127.0.0.1:8080/push/x",
    "http://[::1]/push/x",
    "http://updates.push.services.mozilla.com/wpush/v2/x",
    "ftp://updates.push.services.mozilla.com/x",
]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("endpoint", REFUSED_ENDPOINTS)
def test_it_refuses_an_endpoint_that_is_not_a_public_browser_push_service(student, push_dns, settings, door,
                                                                          endpoint):
    settings.PUSH_SERVICE_HOSTS = ["internal.fcm.example"]
    push_dns["internal.fcm.example"] = ["127.0.0.1"]
    push_dns["localhost"] = ["127.0.0.1"]
    push_dns["fcm.googleapis.com"] = ["142.250.74.74", "10.1.2.3"]  # one bad answer is enough to refuse
    make_client, subscribe = DOORS[door]

    response = subscribe(make_client(student), body(endpoint))

    assert response.status_code == 400
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("endpoint", [
    "https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBh",
    "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABh",
    "https://web.push.apple.com/QGuQyavXutnMH",
    "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA",
    "https://push.campus.example/p/1",  # added by PUSH_SERVICE_HOSTS
])
def test_it_accepts_the_browsers_push_services_and_the_configured_ones(student, push_dns, settings, door, endpoint):
    settings.PUSH_SERVICE_HOSTS = ["push.campus.example"]
    push_dns.update({"web.push.apple.com": ["17.188.0.1"], "wns2-par02p.notify.windows.com": ["2603:1020::1"],
                     "push.campus.example": ["93.184.215.14"]})
    make_client, subscribe = DOORS[door]

    response = subscribe(make_client(student), body(endpoint))

    assert response.status_code == 201
    assert PushSubscription.objects.get().user == student


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("keys, field", [
    ({"p256dh": "abc", "auth": "abc"}, "p256dh"),
    ({"p256dh": b64(b"\x04" + bytes(range(64))), "auth": b64(bytes(16))}, "p256dh"),  # 65 bytes, not on the curve
    ({"p256dh": b64(b"\x02" + bytes(64)), "auth": b64(bytes(16))}, "p256dh"),
    ({"p256dh": BrowserKeys().p256dh, "auth": b64(bytes(15))}, "auth"),
])
def test_it_refuses_keys_that_a_browser_would_not_make(student, push_dns, door, keys, field):
    make_client, subscribe = DOORS[door]

    response = subscribe(make_client(student), {"endpoint": "https://fcm.googleapis.com/fcm/send/k", "keys": keys})

    assert response.status_code == 400
    assert field in json.dumps(response.json())
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize("door", DOORS)
def test_it_keeps_an_endpoint_registered_by_another_user_with_its_owner(student, push_dns, door):
    owner = make_user("s1000777")
    theirs = PushSubscription.objects.create(user=owner, endpoint="https://fcm.googleapis.com/fcm/send/theirs",
                                             p256dh=BrowserKeys().p256dh, auth=BrowserKeys().auth)
    make_client, subscribe = DOORS[door]

    response = subscribe(make_client(student), body(theirs.endpoint))
    fresh = subscribe(make_client(student), body("https://fcm.googleapis.com/fcm/send/mine"))

    assert response.status_code == fresh.status_code == 201  # answered as any first registration
    theirs_now = PushSubscription.objects.get(endpoint=theirs.endpoint)
    assert (theirs_now.user, theirs_now.p256dh, theirs_now.auth) == (owner, theirs.p256dh, theirs.auth)


def test_it_refuses_at_send_time_a_host_that_now_resolves_to_a_private_address(student, push_dns, vapid,
                                                                               admin_user, settings):
    settings.PUSH_ALLOW_HTTP_ENDPOINTS = False
    assert subscribe_on_page(page_client(student), body("https://fcm.googleapis.com/fcm/send/rebound")).status_code == 201
    push_dns["fcm.googleapis.com"] = ["127.0.0.1"]  # DNS rebinding: the name points inside once subscribed

    notification = send(admin_user, [student], ["push"])

    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == "failed"  # permanent: not retried against the internal address
    assert "resolves to a private or reserved address" in delivery.last_error
    assert PushSubscription.objects.filter(user=student).exists()  # nothing learned, nothing deleted


@pytest.mark.parametrize("status", [201, 410])
def test_it_never_posts_to_an_internal_endpoint_stored_before_the_checks(http_peer, vapid, admin_user, settings,
                                                                          push_dns, status):
    internal = http_peer(lambda request: (status, {}, b""))
    settings.PUSH_ALLOW_HTTP_ENDPOINTS = False
    student = make_user("s2300101")
    keys = BrowserKeys()
    # As the API door used to write it, unchecked.
    PushSubscription.objects.create(user=student, endpoint=internal.url + "/admin/", p256dh=keys.p256dh, auth=keys.auth)

    notification = send(admin_user, [student], ["push"])

    assert internal.requests == []
    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == "failed" and "not an https URL" in delivery.last_error
    assert PushSubscription.objects.filter(user=student).exists()  # the internal service's answer is no oracle


def test_it_shows_staff_only_the_push_services_host_and_a_short_hash(admin_user, push_dns, caplog):
    student = make_user("s2300102")
    endpoint = "https://fcm.googleapis.com/fcm/send/secret-capability-token-0123456789"
    with caplog.at_level(logging.DEBUG):
        assert subscribe_on_page(page_client(student), body(endpoint)).status_code == 201
    subscription = PushSubscription.objects.get()
    console = page_client(admin_user)

    listing = console.get("/admin/channels_app/pushsubscription/").content.decode()
    detail = console.get(f"/admin/channels_app/pushsubscription/{subscription.pk}/change/").content.decode()

    assert "fcm.googleapis.com #" in listing and "fcm.googleapis.com #" in detail
    for page in (listing, detail, str(subscription), caplog.text):
        assert "secret-capability-token" not in page
    # Subscriptions come from browsers through the checks, not typed in by hand.
    assert console.get("/admin/channels_app/pushsubscription/add/").status_code == 403


def test_it_keeps_the_endpoint_out_of_the_error_and_the_log_when_the_push_service_cannot_be_reached(
        vapid, admin_user, caplog):
    from .peers import free_port

    student = make_user("s9300001")
    keys = BrowserKeys()
    secret_path = "/push/v2/capability-token-0123456789"
    PushSubscription.objects.create(user=student, endpoint=f"http://127.0.0.1:{free_port()}{secret_path}",
                                    p256dh=keys.p256dh, auth=keys.auth)

    with caplog.at_level(logging.WARNING):
        notification = send(admin_user, [student], ["push"])

    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == "retrying"
    assert "127.0.0.1 #" in delivery.last_error
    assert "capability-token" not in delivery.last_error
    assert "capability-token" not in caplog.text
