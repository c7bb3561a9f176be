"""Single sign-on against real identity providers on 127.0.0.1, started here:

- an OpenID provider: django-oidc-provider in its own small project (tests/oidc_op/), run as a `runserver`
  subprocess with its own SQLite file, signing ID tokens with RS256;
- a SAML IdP: pysaml2's Server as a WSGI app (tests/saml_idp.py), signing assertions through xmlsec1
  with a key and certificate made by the test.

The browser tests sign in through each in Debian's chromium; the others drive the same redirects with
`requests` (a cookie jar that follows redirects, as a browser would). The site is reached as 127.0.0.1,
the IdPs' host, so the SAML answer posted back is same-site and carries its SameSite=Lax cookie.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.core.cache import cache
from django.core.checks import run_checks
from django.urls import get_resolver
from saml2.metadata import entity_descriptor

from accounts.models import Role, User
from accounts.sso import saml_config
from accounts.urls import PUBLIC_SSO_PATHS

from .browser import assert_accessible, with_axe
from .conftest import make_user
from .saml_idp import XMLSEC, SamlIdP, key_and_certificate
from .test_api_authorization import _walk

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "flashnotify", "flashnotify-test-secret-0123456789"
XMLSEC_MISSING = f"{XMLSEC} is not installed (apt-get install xmlsec1; make test does it as root): SAML tests skipped"

PEOPLE = {
    "ada": {"password": "op-pw-ada", "sub": "u-ada-001", "email": "ada@uni.example", "email_verified": True,
            "given_name": "Ada", "family_name": "Lovelace", "locale": "fr-FR", "groups": ["student"]},
    "grace": {"password": "op-pw-grace", "sub": "u-grace-002", "email": "grace@uni.example", "email_verified": True,
              "given_name": "Grace", "family_name": "Hopper", "locale": "en", "groups": ["staff", "alumni"]},
    "alan": {"password": "op-pw-alan", "sub": "u-alan-003", "email": "alan@uni.example", "email_verified": True,
             "given_name": "Alan", "family_name": "Turing", "groups": ["faculty"]},
    "eve": {"password": "op-pw-eve", "sub": "u-eve-004", "email": "alan@uni.example", "email_verified": False,
            "given_name": "Eve", "family_name": "Intruder", "groups": ["student"]},
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def site(live_server, settings):
    """The live server's address as 127.0.0.1, and SITE_URL to match."""
    url = live_server.url.replace("localhost", "127.0.0.1")
    settings.SITE_URL = url
    return url


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory, live_server):
    """django-oidc-provider on a free port, FlashNotify registered as its client: started once for the module
    (bootstrapping and starting it took seconds). Each sign-in is a fresh browser, so no test sees another's
    session at the OP; `oidc_op` resets the mode before each test."""
    tmp_path = tmp_path_factory.mktemp("oidc_op")
    site = live_server.url.replace("localhost", "127.0.0.1")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/openid"
    (tmp_path / "people.json").write_text(json.dumps(PEOPLE))
    mode = tmp_path / "mode"
    mode.write_text("")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oidc_op.settings", "OP_SITE_URL": f"http://127.0.0.1:{port}",
           "OP_DATABASE": str(tmp_path / "op.sqlite3"), "OP_PEOPLE_FILE": str(tmp_path / "people.json"),
           "OP_MODE_FILE": str(mode), "PYTHONPATH": str(ROOT)}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    subprocess.run([sys.executable, "-m", "tests.oidc_op.bootstrap", CLIENT_ID, CLIENT_SECRET,
                    f"{site}/sso/oidc/callback/", f"{site}/login/"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    log = (tmp_path / "op.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "op.log").read_text()
            time.sleep(0.2)
        yield type("OP", (), {"issuer": issuer, "mode": mode, "base": f"http://127.0.0.1:{port}"})
    finally:
        server.terminate()
        server.wait(10)
        log.close()


@pytest.fixture
def oidc_op(oidc_server, settings, site):
    """The OP, issuing good tokens, with FlashNotify configured as its client; yields its control files."""
    oidc_server.mode.write_text("")
    settings.SSO_OIDC_ISSUER = oidc_server.issuer
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    return oidc_server


@pytest.fixture
def saml_idp(tmp_path, settings, site):
    """pysaml2 as an IdP on a free port, trusting FlashNotify's SP metadata; FlashNotify trusting its metadata."""
    if not shutil.which(XMLSEC):
        pytest.skip(XMLSEC_MISSING)
    idp = SamlIdP(tmp_path)
    settings.SSO_SAML_IDP_METADATA = str(idp.metadata_file)
    settings.SSO_SAML_KEY_FILE, settings.SSO_SAML_CERT_FILE = key_and_certificate(tmp_path, "sp")
    settings.SSO_SAML_ENTITY_ID = f"{site}/sso/saml/metadata/"
    settings.SSO_SAML_XMLSEC_BINARY = XMLSEC
    idp.trust(str(entity_descriptor(saml_config())))
    idp.start()
    yield idp
    idp.stop()


def saml_person(name_id, **attributes):
    person = {"name_id": name_id, "eduPersonPrincipalName": [f"{name_id}@uni.example"],
              "mail": [f"{name_id}@uni.example"], "givenName": ["Sam"], "sn": ["Student"],
              "eduPersonAffiliation": ["student"], "preferredLanguage": ["en"]}
    person.update({key: value if isinstance(value, list) else [value] for key, value in attributes.items()})
    return person


def oidc_sign_in(site, username):
    """Through FlashNotify's button and the OP's password page, following every redirect."""
    browser = requests.Session()
    page = browser.get(f"{site}/sso/oidc/login/", timeout=20)
    assert "University sign-in" in page.text, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    next_url = re.search(r'name="next" value="([^"]*)"', page.text).group(1).replace("&amp;", "&")
    answer = browser.post(page.url, data={"csrfmiddlewaretoken": token, "username": username,
                                          "password": PEOPLE[username]["password"], "next": next_url}, timeout=20)
    return browser, answer


def saml_sign_in(site, next_url=""):
    """Through FlashNotify's button, the IdP's redirect binding and its auto-posting form."""
    browser = requests.Session()
    page = browser.get(f"{site}/sso/saml/login/" + (f"?next={next_url}" if next_url else ""), timeout=20)
    action = re.search(r'action="([^"]+)"', page.text).group(1)
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    return browser, browser.post(action, data=fields, timeout=20)


def roles(user):
    return set(user.groups.values_list("name", flat=True))


pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_sign_in_budget():
    """Every sign-in here comes from 127.0.0.1 and counts against one per-address budget (SignInGuard)."""
    cache.clear()


# --- through the browser -----------------------------------------------------------------------

@pytest.fixture
def chromium_page(browser, site):
    context = browser.new_context(base_url=site, locale="en-GB")
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


@pytest.mark.browser
def test_it_signs_a_student_in_through_the_openid_provider_and_lands_on_the_inbox(oidc_op, chromium_page):
    page = with_axe(chromium_page)
    page.goto("/login/")
    assert_accessible(page)
    page.get_by_role("link", name="Sign in with your university account (OpenID Connect)").click()
    page.get_by_label("University username").fill("ada")
    page.get_by_label("University password").fill("op-pw-ada")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/inbox/")

    ada = User.objects.get(institutional_id="u-ada-001")
    assert (ada.first_name, ada.last_name, ada.email, ada.language) == ("Ada", "Lovelace", "ada@uni.example", "fr")
    assert roles(ada) == {Role.USER} and not ada.is_staff and ada.sso_provider == "oidc"
    assert not ada.has_usable_password()
    assert page.locator("html").get_attribute("lang") == "fr"  # the language the provider gave


@pytest.mark.browser
def test_it_shows_a_refused_sign_in_on_a_clear_accessible_page(oidc_op, chromium_page, settings):
    settings.SSO_CREATE_USERS = False
    page = with_axe(chromium_page)
    page.goto("/login/")
    page.get_by_role("link", name="Sign in with your university account (OpenID Connect)").click()
    page.get_by_label("University username").fill("ada")
    page.get_by_label("University password").fill("op-pw-ada")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/sso/oidc/callback/**")
    assert page.get_by_role("heading", name="Sign-in refused").is_visible()
    assert "You have no FlashNotify account yet" in page.get_by_role("alert").inner_text()
    assert_accessible(page)
    assert not User.objects.exists()


@pytest.mark.browser
def test_it_signs_staff_in_through_the_saml_idp_lands_on_the_console_and_signs_out_of_both(saml_idp, chromium_page):
    saml_idp.person = saml_person("grace", eduPersonAffiliation=["staff", "member"], givenName="Grace", sn="Hopper")
    page = chromium_page
    page.goto("/admin/login/")
    page.get_by_role("link", name="Sign in with your university account (SAML)").click()
    page.wait_for_url("**/admin/")
    assert "FlashNotify console" in page.content()

    grace = User.objects.get(institutional_id="grace@uni.example")
    assert roles(grace) == {Role.STAFF} and grace.is_staff and grace.sso_provider == "saml"
    assert (grace.first_name, grace.last_name) == ("Grace", "Hopper")

    page.goto("/inbox/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login/")
    assert saml_idp.logouts == ["grace"]
    page.goto("/inbox/")
    assert "/login/" in page.url


# --- refused sign-ins ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, message", [
    ("wrong-audience", "issued for another application (wrong audience)"),
    ("expired", "This sign-in has expired"),
])
def test_it_refuses_an_id_token_for_another_audience_or_expired(oidc_op, site, mode, message):
    oidc_op.mode.write_text(mode)
    _, answer = oidc_sign_in(site, "ada")
    assert answer.status_code == 403 and answer.url.startswith(f"{site}/sso/oidc/callback/")
    assert "Sign-in refused" in answer.text and message in answer.text
    assert not User.objects.exists()


@pytest.mark.parametrize("mode, message", [
    ("wrong-audience", "issued for another application (wrong audience)"),
    ("expired", "This sign-in has expired"),
])
def test_it_refuses_a_saml_assertion_for_another_audience_or_expired(saml_idp, site, mode, message):
    saml_idp.person = saml_person("sam")
    saml_idp.mode = mode
    _, answer = saml_sign_in(site)
    assert answer.status_code == 403 and "Sign-in refused" in answer.text and message in answer.text
    assert not User.objects.exists()


def test_it_refuses_an_unknown_person_when_auto_creation_is_off(oidc_op, saml_idp, site, settings):
    settings.SSO_CREATE_USERS = False
    saml_idp.person = saml_person("sam")
    for _, answer in (oidc_sign_in(site, "ada"), saml_sign_in(site)):
        assert answer.status_code == 403 and "You have no FlashNotify account yet" in answer.text
    assert not User.objects.exists()


def test_it_refuses_an_assertion_signed_by_another_key(saml_idp, site, tmp_path):
    saml_idp.key_file, saml_idp.cert_file = key_and_certificate(tmp_path, "impostor")
    saml_idp.trust(saml_idp.sp_metadata)
    saml_idp.person = saml_person("sam")
    _, answer = saml_sign_in(site)
    assert answer.status_code == 403 and "could not be verified" in answer.text
    assert not User.objects.exists()


# --- matching ----------------------------------------------------------------------------------------

def test_it_matches_by_institutional_id_before_email_then_by_verified_email_only(oidc_op, site):
    by_id = make_user("s100", email="old-address@uni.example")
    User.objects.filter(pk=by_id.pk).update(institutional_id="u-ada-001")
    same_email = make_user("s101", email="ada@uni.example")
    alan = make_user("t200", email="ALAN@uni.example")

    _, answer = oidc_sign_in(site, "ada")
    assert answer.url == f"{site}/inbox/"
    by_id.refresh_from_db()
    assert by_id.email == "ada@uni.example" and by_id.first_name == "Ada"
    assert User.objects.get(pk=same_email.pk).institutional_id is None

    _, answer = oidc_sign_in(site, "alan")  # verified email: the local account is linked to the identity
    assert answer.url == f"{site}/admin/"  # faculty maps to Staff: the console
    alan.refresh_from_db()
    assert alan.institutional_id == "u-alan-003" and roles(alan) == {Role.STAFF} and alan.is_staff

    _, answer = oidc_sign_in(site, "eve")  # the same email, not verified: never linked to alan
    eve = User.objects.get(institutional_id="u-eve-004")
    assert eve.pk != alan.pk and eve.email == "alan@uni.example" and answer.url == f"{site}/inbox/"
    assert User.objects.count() == 4


def test_it_trusts_the_saml_email_only_when_told_to(saml_idp, site, settings):
    local = make_user("s300", email="sam@uni.example")
    saml_idp.person = saml_person("sam", eduPersonAffiliation="faculty")
    settings.SSO_SAML_TRUST_EMAIL = False
    saml_sign_in(site)
    assert User.objects.get(pk=local.pk).institutional_id is None
    User.objects.filter(institutional_id="sam@uni.example").delete()

    settings.SSO_SAML_TRUST_EMAIL = True
    _, answer = saml_sign_in(site)
    local.refresh_from_db()
    assert local.institutional_id == "sam@uni.example" and roles(local) == {Role.STAFF}
    assert answer.url == f"{site}/admin/" and User.objects.count() == 1


def test_it_keeps_a_console_admin_and_follows_the_idp_for_other_roles(saml_idp, site):
    admin = make_user("a1", role=Role.ADMIN, is_staff=True, email="a1@uni.example")
    User.objects.filter(pk=admin.pk).update(institutional_id="a1@uni.example")
    saml_idp.person = saml_person("a1", eduPersonAffiliation="staff")
    _, answer = saml_sign_in(site)
    admin.refresh_from_db()
    assert roles(admin) == {Role.ADMIN, Role.STAFF} and admin.is_staff and answer.url == f"{site}/admin/"


# --- passwords ---------------------------------------------------------------------------------------

def test_it_refuses_password_sign_in_for_sso_users_when_turned_off(saml_idp, site, settings, client):
    local = make_user("s400", email="s400@uni.example")  # password pw-s400
    User.objects.filter(pk=local.pk).update(institutional_id="s400@uni.example")
    saml_idp.person = saml_person("s400")
    saml_sign_in(site)
    other = make_user("s401")

    settings.SSO_USERS_PASSWORD_SIGN_IN = False
    answer = client.post("/login/", {"username": "s400", "password": "pw-s400"})
    assert answer.status_code == 200 and "use the single sign-on button" in answer.content.decode()
    staff = make_user("t400", role=Role.STAFF, is_staff=True)
    User.objects.filter(pk=staff.pk).update(sso_provider="oidc")
    answer = client.post("/admin/login/", {"username": "t400", "password": "pw-t400"})
    assert "use the single sign-on button" in answer.content.decode()
    answer = client.post("/api/v1/auth/token/", {"username": "s400", "password": "pw-s400"},
                         content_type="application/json")
    assert answer.status_code == 403 and answer.json()["code"] == "password_sign_in_off"
    assert "_auth_user_id" not in client.session
    assert client.post("/login/", {"username": "s401", "password": "pw-s401"}).status_code == 302  # a local account

    settings.SSO_USERS_PASSWORD_SIGN_IN = True
    assert client.post("/api/v1/auth/token/", {"username": "s400", "password": "pw-s400"},
                       content_type="application/json").status_code == 200


def test_it_throttles_sso_callbacks_with_the_other_sign_in_doors(oidc_op, site, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "login": "1/min"}
    browser = requests.Session()
    assert browser.get(f"{site}/sso/oidc/callback/?code=x&state=y", timeout=10).status_code != 429
    answer = browser.get(f"{site}/sso/oidc/callback/?code=x&state=y", timeout=10)
    assert answer.status_code == 429 and "Too many attempts" in answer.text


# --- pages, sign-out, configuration ----------------------------------------------------------------

def test_it_offers_the_configured_providers_on_both_sign_in_pages_in_french(oidc_op, saml_idp, client):
    for path in ("/login/", "/admin/login/"):
        page = client.get(path, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
        assert "Se connecter avec votre compte universitaire" in page, path
        assert 'href="/sso/oidc/login/' in page and 'href="/sso/saml/login/' in page
    assert "next=%2Fadmin%2F" in client.get("/admin/login/").content.decode()


def test_it_offers_nothing_and_answers_404_while_sso_is_off(client):
    assert "/sso/" not in client.get("/login/").content.decode()
    for path in PUBLIC_SSO_PATHS:
        assert client.get("/" + path).status_code == 404, path


def test_it_lists_every_sso_route_as_public_on_purpose():
    routes = {route for route in _walk(get_resolver().url_patterns) if route.startswith("sso/")}
    assert routes == set(PUBLIC_SSO_PATHS)


def test_it_signs_out_of_the_openid_provider_too(oidc_op, site):
    browser, answer = oidc_sign_in(site, "ada")
    assert answer.url == f"{site}/inbox/"
    inbox = browser.get(f"{site}/inbox/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', inbox.text).group(1)
    signed_out = browser.post(f"{site}/logout/", data={"csrfmiddlewaretoken": token},
                              headers={"Referer": f"{site}/inbox/"}, allow_redirects=False, timeout=10)
    refresh = re.search(r'content="0;url=([^"]+)"', signed_out.text).group(1).replace("&amp;", "&")
    assert refresh.startswith(f"{oidc_op.issuer}/end-session") and "id_token_hint=" in refresh
    assert browser.get(f"{site}/inbox/", timeout=10).url.startswith(f"{site}/login/")
    assert browser.get(refresh, timeout=10).url.startswith(f"{site}/login/")  # the OP sends the browser back


def test_it_signs_staff_out_of_the_console_and_the_openid_provider(oidc_op, site):
    browser, answer = oidc_sign_in(site, "alan")
    assert answer.url == f"{site}/admin/"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', answer.text).group(1)
    signed_out = browser.post(f"{site}/admin/logout/", data={"csrfmiddlewaretoken": token},
                              headers={"Referer": f"{site}/admin/"}, allow_redirects=False, timeout=10)
    assert f'content="0;url={oidc_op.issuer}/end-session' in signed_out.text
    assert browser.get(f"{site}/admin/", timeout=10).url.startswith(f"{site}/admin/login/")


def test_it_reports_sso_misconfiguration_as_system_checks(settings, tmp_path):
    settings.SSO_OIDC_ISSUER = "http://idp.example.edu/realms/main"
    settings.OIDC_RP_CLIENT_ID = "flashnotify"
    settings.OIDC_RP_CLIENT_SECRET = ""
    settings.SSO_SAML_IDP_METADATA = str(tmp_path / "missing.xml")
    settings.SSO_SAML_KEY_FILE = str(tmp_path / "sp.key")
    settings.SSO_ROLE_MAP = "student:User,staff:Janitor"
    ids = {message.id for message in run_checks(tags=["security"])}
    assert {"accounts.E102", "accounts.E103", "accounts.E105", "accounts.E106"} <= ids

    settings.SSO_OIDC_ISSUER = settings.SSO_SAML_IDP_METADATA = settings.SSO_SAML_KEY_FILE = ""
    settings.OIDC_RP_CLIENT_ID = ""
    settings.SSO_ROLE_MAP = "student:User,staff:Staff"
    assert not [m for m in run_checks(tags=["security"]) if m.id.startswith("accounts.E1")]

