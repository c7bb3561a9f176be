"""The student's side in Debian's chromium: inbox, acknowledgement, preferences, phone, push, email links, French.

Notifications go through the real service (`notification_send`), and the fan-out and delivery
run in this process (`notification_fan_out`, `deliveries_send`) against local peers. axe-core
checks every page the tests visit.
"""

import base64
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
import json
import os
import re

import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import expect
from cryptography.hazmat.primitives.asymmetric import ec

from accounts.models import PhoneVerification, Role, User
from channels_app.models import PushSubscription
from notifications.models import Delivery, InboxMessage, Notification, Preference
from notifications.engine import deliveries_send, notification_fan_out
from notifications.services import notification_approve, notification_send

from .browser import SCREENSHOTS, assert_accessible, sign_in, with_axe
from .conftest import make_user

SCREENSHOT_TIME = datetime(2026, 9, 14, 8, 30, tzinfo=dt_timezone.utc)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def b64url(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def send(sender, students, **fields):
    """Send through the service, then fan out and deliver right here, as a worker would."""
    fields.setdefault("notifier", "academic")
    notification, _ = notification_send(sender=sender, audience={"users": [s.username for s in students]}, **fields)
    if notification.status == Notification.Status.AWAITING_APPROVAL:  # the two-person rule: a second admin
        second = User.objects.filter(username="a7000002").first() or make_user(
            "a7000002", role=Role.ADMIN, is_staff=True, is_superuser=True)
        notification_approve(notification, by=second)
    notification_fan_out(notification.pk)
    deliveries_send(list(Delivery.objects.filter(notification=notification, status="queued")
                         .values_list("id", flat=True)))
    return notification


@pytest.fixture
def ada(db):
    return make_user("s7000001", first_name="Ada", last_name="Lovelace")


@pytest.fixture
def sender(db):
    return make_user("a7000001", role=Role.ADMIN, is_staff=True, is_superuser=True)


def test_it_shows_a_sent_alert_marks_it_read_and_records_the_acknowledgement(page, ada, sender):
    with_axe(page)
    send(sender, [ada], category="timetable", title="Room change for CS101", body="Lecture moves to B12.",
         channels=["inbox"])
    send(sender, [ada], category="grade", title="Marks for the essay are out", body="See the course page.",
         channels=["inbox"])
    alert = send(sender, [ada], notifier="security", category="security", title="Fire drill at 14:00",
                 body="Leave the building by the nearest exit when the alarm sounds.", channels=["inbox"],
                 data={"severity": "drill"})
    for minutes, message in enumerate(InboxMessage.objects.filter(recipient=ada).order_by("id")):
        # Fixed times, so the screenshot for the README changes only when the page does.
        InboxMessage.objects.filter(pk=message.pk).update(created_at=SCREENSHOT_TIME + timedelta(minutes=minutes * 7))

    sign_in(page, "s7000001", "pw-s7000001")

    assert page.url.endswith("/inbox/")
    assert page.locator("#unread-count").inner_text() == "3 unread"
    first = page.locator("ul.inbox li").first
    assert "Fire drill at 14:00" in first.inner_text() and "unread" in first.get_attribute("class")
    assert "Please acknowledge" in first.inner_text()
    assert_accessible(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "inbox.png"), full_page=True)

    page.get_by_role("link", name=re.compile("Fire drill at 14:00")).click()
    assert page.get_by_role("heading", name="Fire drill at 14:00").is_visible()
    assert "Leave the building by the nearest exit" in page.inner_text("main")
    assert page.locator("#unread-count").inner_text() == "2 unread"
    assert InboxMessage.objects.get(notification=alert).read_at is not None
    assert_accessible(page)

    page.get_by_role("button", name="Acknowledge").click()

    assert "You acknowledged this on" in page.locator("#acknowledged").inner_text()
    assert InboxMessage.objects.get(notification=alert).acknowledged_at is not None
    page.goto("/inbox/?category=grade")
    assert page.locator("ul.inbox li").count() == 1
    assert_accessible(page)

    page.get_by_role("button", name="Sign out").click()
    assert page.url.endswith("/login/")
    page.goto("/inbox/")
    assert "/login/?next=" in page.url


def test_it_saves_a_preference_and_shows_it_saved_after_reloading(page, ada):
    with_axe(page)
    sign_in(page, "s7000001", "pw-s7000001")
    page.goto("/preferences/")
    assert_accessible(page)
    email_for_grades = page.get_by_label("Grade release by Email")
    assert email_for_grades.is_checked()

    email_for_grades.uncheck()
    page.get_by_label("Quiet hours start").fill("22:00")
    page.get_by_label("Quiet hours end").fill("07:00")
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Save preferences").click()

    status = page.get_by_role("status").first.inner_text()
    assert "Grade release by Email: off" in status and "Time zone: Europe/Paris" in status
    page.reload()
    assert not page.get_by_label("Grade release by Email").is_checked()
    assert page.get_by_label("Quiet hours start").input_value() == "22:00"
    assert Preference.objects.get(user=ada, category="grade", channel="email").enabled is False
    assert "Always on" in page.locator("tr.mandatory").inner_text()
    assert_accessible(page)
    page.goto("/preferences/")  # a clean page for the README, without the saved message
    page.screenshot(path=str(SCREENSHOTS / "preferences.png"), full_page=True)


def test_it_verifies_a_phone_with_the_code_texted_to_the_twilio_stand_in(page, ada, http_peer, settings):
    twilio = http_peer(lambda request: (201, {}, {"sid": "SM" + "1" * 32, "status": "queued"}))
    settings.TWILIO_API_BASE = twilio.url
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "0" * 32, "test-token"
    settings.TWILIO_FROM_NUMBER, settings.TWILIO_MESSAGING_SERVICE_SID = "+15005550006", ""
    with_axe(page)
    sign_in(page, "s7000001", "pw-s7000001")
    page.get_by_role("link", name="Phone").click()
    assert_accessible(page)

    page.get_by_label("Mobile phone number").fill("+33 6 12 34 56 78")
    page.get_by_role("button", name="Send me a code").click()
    [sms] = twilio.requests
    code = re.search(r"\b(\d{6})\b", sms["form"]["Body"]).group(1)
    assert sms["form"]["To"] == "+33612345678"
    assert_accessible(page)
    page.get_by_label("Code received by SMS").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Verify").click()
    assert "This code is not right" in page.inner_text("main")
    assert_accessible(page)
    page.get_by_label("Code received by SMS").fill(code)
    page.get_by_role("button", name="Verify").click()

    assert "Your phone number is verified" in page.get_by_role("status").inner_text()
    assert "+33612345678" in page.locator("#phone-verified").inner_text()
    ada.refresh_from_db()
    assert ada.phone == "+33612345678" and ada.phone_verified_at is not None
    assert PhoneVerification.objects.get().attempts == 2


FAKE_PUSH = """
(() => {
  const fake = %s;
  function subscription() {
    return {
      endpoint: fake.endpoint, expirationTime: null,
      toJSON() { return {endpoint: fake.endpoint, expirationTime: null, keys: fake.keys}; },
      unsubscribe() { localStorage.removeItem("fake-push"); return Promise.resolve(true); },
    };
  }
  PushManager.prototype.subscribe = function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    localStorage.setItem("fake-push", btoa(String.fromCharCode(...key)));
    return Promise.resolve(subscription());
  };
  PushManager.prototype.getSubscription = function () {
    return Promise.resolve(localStorage.getItem("fake-push") ? subscription() : null);
  };
})();
"""


def test_it_subscribes_to_push_with_the_pages_script_and_receives_an_encrypted_notification(
        page, ada, sender, http_peer, settings):
    import http_ece

    vapid = ec.generate_private_key(ec.SECP256R1())
    settings.VAPID_PRIVATE_KEY = b64url(vapid.private_numbers().private_value.to_bytes(32, "big"))
    settings.VAPID_PUBLIC_KEY = b64url(vapid.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    settings.PUSH_ALLOW_HTTP_ENDPOINTS = True
    push_service = http_peer(lambda request: (201, {}, b""))
    browser_key, auth_secret = ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
    keys = {"p256dh": b64url(browser_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)), "auth": b64url(auth_secret)}
    endpoint = f"{push_service.url}/push/ada-browser"
    page.context.grant_permissions(["notifications"], origin=page.base_url)
    page.add_init_script(FAKE_PUSH % json.dumps({"endpoint": endpoint, "keys": keys}))
    with_axe(page)
    sign_in(page, "s7000001", "pw-s7000001")
    page.goto("/preferences/")
    expect(page.locator("#push-status")).to_have_attribute("data-state", "off")
    assert page.locator("#push-status").inner_text() == "Push is off for this browser."

    # The page's script has looked up this browser's subscription once the status says "off".
    expect(page.locator("#push-status")).to_have_attribute("data-state", "off")
    page.get_by_role("button", name="Turn on push notifications").click()

    expect(page.locator("#push-status")).to_have_attribute("data-state", "on")
    assert page.evaluate("navigator.serviceWorker.getRegistration('/').then(r => r.active.scriptURL)").endswith("/sw.js")
    assert page.evaluate("localStorage.getItem('fake-push')") == base64.b64encode(
        base64.urlsafe_b64decode(settings.VAPID_PUBLIC_KEY + "=")).decode()
    subscription = PushSubscription.objects.get(user=ada)
    assert (subscription.endpoint, subscription.p256dh, subscription.auth) == (endpoint, keys["p256dh"], keys["auth"])
    assert_accessible(page)

    notification = send(sender, [ada], category="deadline", title="Essay due Friday", body="Submit by 17:00.",
                        channels=["push"])

    [request] = push_service.requests
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert request["path"] == "/push/ada-browser" and headers["content-encoding"] == "aes128gcm"
    assert headers["authorization"].startswith("vapid t=")
    payload = json.loads(http_ece.decrypt(request["body"], private_key=browser_key, auth_secret=auth_secret,
                                          version="aes128gcm"))
    assert payload["title"] == "Essay due Friday" and payload["body"] == "Submit by 17:00."
    assert payload["notification_id"] == notification.pk
    assert Delivery.objects.get(notification=notification, channel="push").status == "sent"

    page.reload()
    page.get_by_role("button", name="Turn off push on this browser").click()
    expect(page.locator("#push-status")).to_have_attribute("data-state", "off")
    assert not PushSubscription.objects.filter(user=ada).exists()


def test_it_says_so_when_push_permission_is_refused(page, ada, settings):
    settings.VAPID_PUBLIC_KEY = b64url(b"\x04" + b"\x01" * 64)
    page.context.clear_permissions()
    page.add_init_script("Notification.requestPermission = () => Promise.resolve('denied');")
    sign_in(page, "s7000001", "pw-s7000001")
    page.goto("/preferences/")

    # The page's script has looked up this browser's subscription once the status says "off".
    expect(page.locator("#push-status")).to_have_attribute("data-state", "off")
    page.get_by_role("button", name="Turn on push notifications").click()

    expect(page.locator("#push-status")).to_have_attribute("data-state", "denied")
    assert "blocked" in page.locator("#push-status").inner_text()
    assert not PushSubscription.objects.exists()


def test_it_says_so_when_the_browser_has_no_push(page, ada, settings):
    settings.VAPID_PUBLIC_KEY = b64url(b"\x04" + b"\x01" * 64)
    page.add_init_script("delete window.PushManager;")
    sign_in(page, "s7000001", "pw-s7000001")
    page.goto("/preferences/")

    assert "does not support web push" in page.locator("#push-status").inner_text()
    assert page.get_by_role("button", name="Turn on push notifications").count() == 0


def test_it_unsubscribes_from_a_category_with_the_link_of_a_received_email(page, ada, sender, smtp_peer, settings,
                                                                           live_server):
    import urllib.request

    settings.SITE_URL = live_server.url
    with_axe(page)
    send(sender, [ada], category="grade", title="Marks are out", body="Your essay marks are out.", channels=["email"])
    [email] = smtp_peer.messages
    link = email["List-Unsubscribe"].strip().strip("<>")
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in email.get_body(("html",)).get_content()

    page.goto(link)
    assert "Stop receiving “Grade release” emails?" in page.inner_text("main")
    assert not Preference.objects.exists()  # opening the link changes nothing
    assert_accessible(page)
    page.get_by_role("button", name="Unsubscribe").click()

    assert "you will no longer receive “Grade release” emails" in page.locator("#unsubscribed").inner_text()
    assert Preference.objects.get(user=ada, category="grade", channel="email").enabled is False
    assert_accessible(page)

    Preference.objects.update(enabled=True)  # and the mail client's RFC 8058 one-click POST does the same:
    one_click = urllib.request.Request(link, data=b"List-Unsubscribe=One-Click", method="POST",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(one_click, timeout=10) as response:
        assert response.status == 200
    assert Preference.objects.get(user=ada, category="grade", channel="email").enabled is False


def test_it_shows_french_pages_to_a_french_speaking_student(browser, live_server, sender):
    marie = make_user("s7000002", first_name="Marie", language="fr", timezone="Europe/Paris")
    send(sender, [marie], category="timetable", title="Changement de salle", body="Le cours a lieu en B12.",
         channels=["inbox"])
    context = browser.new_context(base_url=live_server.url, locale="fr-FR")
    try:
        page = with_axe(context.new_page())
        page.goto("/login/")
        assert page.locator("html").get_attribute("lang") == "fr"  # the browser's language before sign-in
        assert page.get_by_role("heading", name="Se connecter").is_visible()
        assert_accessible(page)
        page.get_by_label("Nom d’utilisateur").fill("s7000002")
        page.get_by_label("Mot de passe").fill("pw-s7000002")
        page.get_by_role("button", name="Se connecter").click()

        assert page.get_by_role("heading", name="Boîte de réception").is_visible()
        assert page.locator("#unread-count").inner_text() == "1 non lu"
        assert re.search(r"\d{1,2} [a-zéû]+ \d{4} \d{2}:\d{2}", page.locator("ul.inbox time").inner_text())
        assert_accessible(page)
        page.goto("/preferences/")
        assert page.get_by_role("heading", name="Préférences", exact=True).is_visible()
        assert page.get_by_label("Publication des notes par E-mail").is_checked()
        assert "Toujours actives" in page.locator("tr.mandatory").inner_text()
        assert_accessible(page)
        page.goto("/phone/")
        assert page.get_by_role("heading", name="Vérification du téléphone").is_visible()
        assert_accessible(page)
    finally:
        context.close()


def test_it_has_no_serious_accessibility_problem_on_the_other_pages(page, ada, sender):
    from .browser import axe_script

    if not axe_script():
        pytest.skip("axe-core is not installed (make test installs it with npm from the registry)")
    from notifications.links import link_token

    with_axe(page)
    alert = send(sender, [ada], notifier="security", category="security", title="Lockdown lifted",
                 body="You may leave the rooms.", channels=["inbox"], data={"severity": "info"})
    pages = ["/login/", "/password-reset/", "/password-reset/sent/", "/password-reset/done/",
             "/password-reset/MQ/bad-token/", f"/ack/{link_token('acknowledge', user_id=ada.pk, notification_id=alert.pk)}/",
             "/ack/tampered/", "/no-such-page/", f"/unsubscribe/{link_token('unsubscribe', user_id=ada.pk, notification_id=alert.pk)}/"]
    for path in pages:
        page.goto(path)
        assert_accessible(page)
    page.goto("/login/")
    page.get_by_role("button", name="Sign in").click()  # the form with its errors
    assert_accessible(page)
