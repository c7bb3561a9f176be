"""Invitations: a person provisioned at any door (command, console, API) gets a link to choose a password,
in their language, sent by the workers; the link works once and expires; the console and a command resend
it; the password reset form sends one to whoever has no password yet."""

import re
import time
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from accounts.models import Cohort, User
from accounts.services import users_upsert

from .api_support import API, key_client
from .browser import assert_accessible, with_axe
from .conftest import BROKERS, make_user
from .delivery_helpers import run_queued_tasks
from .peers import wait_until

LINK = re.compile(r"https?://\S+/invitation/\S+/")
CSV = ("username,email,language,is_active\n"
       "s8000001,ada@example.edu,fr,\n"
       "s8000002,bob@example.edu,en,\n"
       "s8000003,,en,\n"            # no email address: nobody to write to
       "s8000004,cy@example.edu,en,no\n")  # created inactive


def link_in(email):
    return LINK.search(email.body).group(0)


def path_of(url):
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def invited(username, *, language="en", email=None):
    """A person as every provisioning door leaves them: no usable password."""
    users_upsert([{"username": username, "email": email or f"{username}@example.edu", "language": language}])
    return User.objects.get(username=username)


def invitation_path(user, mailoutbox, client=None):
    """Ask for the person's invitation the way an administrator does (the command); the path of its link."""
    call_command("send_invitations", user.username, stdout=StringIO())
    return path_of(link_in(mailoutbox[-1]))


def accept(client, path, password="a-long-new-password-42"):
    return client.post(path, {"new_password1": password, "new_password2": password})


# --- sent automatically, by each door ----------------------------------------------------------------------

def test_it_invites_people_imported_by_the_command_through_the_workers_in_their_language(
        db, broker, tmp_path, mailoutbox, django_capture_on_commit_callbacks):
    path = tmp_path / "users.csv"
    path.write_text(CSV)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_users", str(path), stdout=StringIO())
    assert mailoutbox == []  # the import hands the emails to the workers; it sends none itself
    ran = [result for _, result in run_queued_tasks(django_capture_on_commit_callbacks)]

    assert ran == [{"sent": 2, "skipped": 0, "failed": 0}]
    by_address = {email.to[0]: email for email in mailoutbox}
    assert sorted(by_address) == ["ada@example.edu", "bob@example.edu"]
    french, english = by_address["ada@example.edu"], by_address["bob@example.edu"]
    assert french.subject == "Choisissez votre mot de passe FlashNotify"
    assert "Votre nom d’utilisateur est s8000001." in french.body
    assert english.subject == "Choose your FlashNotify password"
    assert "Your username is s8000002." in english.body
    assert LINK.search(french.body) and LINK.search(english.body)


def test_it_invites_people_created_through_the_api(broker, admin_user, mailoutbox, django_capture_on_commit_callbacks):
    client = key_client(admin_user, ["manage_users"])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{API}users/", {"users": [
            {"username": "s7000001", "email": "a@example.edu", "language": "fr"},
            {"username": "s7000002", "phone": "not a phone", "email": "b@example.edu"},  # invalid: not created
        ]}, format="json")
    run_queued_tasks(django_capture_on_commit_callbacks)

    assert response.json()["summary"]["created"] == 1
    [email] = mailoutbox
    assert email.to == ["a@example.edu"] and email.subject == "Choisissez votre mot de passe FlashNotify"


def test_it_invites_people_imported_in_the_console_but_not_on_a_dry_run(
        broker, client, admin_user, mailoutbox, django_capture_on_commit_callbacks):
    Cohort.objects.create(code="cs101", name="CS 101")
    client.force_login(admin_user)
    text = "username,email,cohorts\ns8000001,ada@example.edu,cs101\n"

    def upload(dry_run):
        data = {"csv_file": SimpleUploadedFile("users.csv", text.encode(), content_type="text/csv")}
        if dry_run:
            data["dry_run"] = "on"
        with django_capture_on_commit_callbacks(execute=True):
            client.post("/admin/accounts/user/import/", data)
        run_queued_tasks(django_capture_on_commit_callbacks)

    upload(dry_run=True)
    assert mailoutbox == []
    upload(dry_run=False)
    [email] = mailoutbox
    assert email.to == ["ada@example.edu"] and LINK.search(email.body)


def test_it_does_not_invite_again_when_the_same_file_is_imported_again(
        db, broker, tmp_path, mailoutbox, django_capture_on_commit_callbacks):
    path = tmp_path / "users.csv"
    path.write_text(CSV)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            call_command("import_users", str(path), stdout=StringIO())
        run_queued_tasks(django_capture_on_commit_callbacks)

    assert len(mailoutbox) == 2


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_sends_a_bulk_imports_invitations_through_real_workers_and_smtp(broker, smtp_peer, workers, tmp_path,
                                                                          settings):
    settings.INVITATION_BATCH_SIZE = 20
    path = tmp_path / "users.csv"
    path.write_text("username,email,language\n" + "".join(
        f"s9{n:06d},s9{n:06d}@example.edu,{'fr' if n % 2 else 'en'}\n" for n in range(60)))
    workers(INVITATION_BATCH_SIZE=20)

    call_command("import_users", str(path), stdout=StringIO())

    wait_until(lambda: len(smtp_peer.messages) >= 60, timeout=120, message="60 invitations")
    by_address = {m["To"]: m for m in smtp_peer.messages}
    assert len(smtp_peer.messages) == 60 == len(by_address)
    french = by_address["s9000001@example.edu"]
    assert str(french["Subject"]) == "Choisissez votre mot de passe FlashNotify"
    link = LINK.search(french.get_body(("plain",)).get_content()).group(0)
    assert accept(Client(), path_of(link))["Location"] == "/inbox/"


# --- the link ----------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_it_lets_the_invited_person_choose_a_password_and_sign_in(mailoutbox):
    person = invited("s8000001")
    path = invitation_path(person, mailoutbox)
    browser = Client()

    page = browser.get(path)
    assert page.status_code == 200
    assert "Choose your password" in page.content.decode() and "s8000001" in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    done = accept(browser, path)

    assert done.status_code == 302 and done["Location"] == "/inbox/"
    inbox = browser.get("/inbox/")
    assert inbox.status_code == 200
    assert "Your password is set and you are signed in." in inbox.content.decode()
    person.refresh_from_db()
    assert person.check_password("a-long-new-password-42") and person.auth_version == 1
    signed_in = Client().post("/login/", {"username": "s8000001", "password": "a-long-new-password-42"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/inbox/"


@pytest.mark.django_db
def test_it_shows_the_page_in_the_persons_language_and_checks_the_password_like_any_other(mailoutbox):
    person = invited("s8000001", language="fr")
    path = invitation_path(person, mailoutbox)

    page = Client().get(path).content.decode()
    refused = accept(Client(), path, password="12345678")

    assert "Choisissez votre mot de passe" in page and 'lang="fr"' in page
    assert refused.status_code == 200 and "errors" in refused.content.decode()
    person.refresh_from_db()
    assert not person.has_usable_password()


@pytest.mark.django_db
def test_it_refuses_a_link_used_already(mailoutbox):
    person = invited("s8000001")
    path = invitation_path(person, mailoutbox)
    accept(Client(), path)

    again = Client().get(path)
    second = accept(Client(), path, password="another-long-password-43")

    assert again.status_code == 400 and "has been used already" in again.content.decode()
    assert second.status_code == 400
    person.refresh_from_db()
    assert person.check_password("a-long-new-password-42")


@pytest.mark.django_db
def test_it_refuses_an_expired_link(mailoutbox, monkeypatch, settings):
    settings.INVITATION_TTL_DAYS = 7
    person = invited("s8000001")
    path = invitation_path(person, mailoutbox)
    later = time.time() + 7 * 24 * 3600 + 60

    class EightDaysLater:
        @staticmethod
        def time():
            return later

    monkeypatch.setattr(signing, "time", EightDaysLater)
    response = Client().get(path)

    assert response.status_code == 400 and "This link has expired." in response.content.decode()
    assert 'href="/password-reset/"' in response.content.decode()


@pytest.mark.django_db
def test_it_refuses_a_tampered_link_and_a_link_made_before_the_email_changed(mailoutbox):
    person = invited("s8000001")
    path = invitation_path(person, mailoutbox)
    other = invited("s8000002")
    tampered = path.replace(f"/invitation/{person.pk}:", f"/invitation/{other.pk}:")

    refused = Client().get(tampered)
    person.email = "new-address@example.edu"
    person.save()
    stale = Client().get(path)

    assert tampered != path and refused.status_code == 400 and "This link is not valid." in refused.content.decode()
    assert stale.status_code == 400


# --- resent from the console and by the command ------------------------------------------------------------

@pytest.fixture
def four_people(db):
    pending = invited("s8000001")
    with_password = make_user("s8000002")
    inactive = invited("s8000003")
    User.objects.filter(pk=inactive.pk).update(is_active=False)
    no_email = invited("s8000004")
    User.objects.filter(pk=no_email.pk).update(email="")
    return [pending, with_password, inactive, no_email]


def test_it_resends_from_the_console_saying_how_many_were_sent_and_who_was_skipped_and_why(
        client, admin_user, four_people, mailoutbox):
    client.force_login(admin_user)

    response = client.post("/admin/accounts/user/", {"action": "send_invitations",
                                                     "_selected_action": [u.pk for u in four_people]}, follow=True)

    text = response.content.decode()
    assert "1 invitation sent." in text
    assert "1 inactive (s8000003)" in text and "1 no email address (s8000004)" in text
    assert "1 already has a password (s8000002)" in text
    [email] = mailoutbox
    assert email.to == ["s8000001@example.edu"] and LINK.search(email.body)
    [entry] = LogEntry.objects.filter(change_message__startswith="Invitation")
    assert entry.object_id == str(four_people[0].pk) and entry.user == admin_user


def test_it_hands_a_large_console_selection_to_the_workers(
        broker, client, admin_user, four_people, settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.INVITATION_BATCH_SIZE = 2
    client.force_login(admin_user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/accounts/user/", {"action": "send_invitations",
                                                         "_selected_action": [u.pk for u in four_people]}, follow=True)
    assert "1 invitation handed to the workers." in response.content.decode() and mailoutbox == []
    run_queued_tasks(django_capture_on_commit_callbacks)

    assert [email.to for email in mailoutbox] == [["s8000001@example.edu"]]


def test_it_resends_by_command_and_reports_the_skipped_with_their_reason(four_people, mailoutbox):
    out = StringIO()

    call_command("send_invitations", *[u.username for u in four_people], stdout=out)

    assert "1 invitation(s) sent, 3 skipped, 0 failed." in out.getvalue()
    assert "skipped s8000003: inactive" in out.getvalue() and "skipped s8000004: no email address" in out.getvalue()
    assert "skipped s8000002: already has a password" in out.getvalue()
    assert [email.to for email in mailoutbox] == [["s8000001@example.edu"]]


def test_it_leaves_people_the_identity_provider_knows_to_single_sign_on(db, settings, mailoutbox,
                                                                         django_capture_on_commit_callbacks):
    settings.SSO_SAML_IDP_METADATA = "https://idp.example.edu/metadata"
    settings.SSO_USERS_PASSWORD_SIGN_IN = False
    with django_capture_on_commit_callbacks(execute=True):
        users_upsert([{"username": "s8000011", "email": "sso@example.edu", "institutional_id": "s8000011@example.edu"},
                      {"username": "s8000012", "email": "local@example.edu"}])
    out = StringIO()

    call_command("send_invitations", "s8000011", "s8000012", stdout=out)

    assert "skipped s8000011: signs in through single sign-on" in out.getvalue()
    assert [email.to for email in mailoutbox] == [["local@example.edu"]]  # the local account only
    settings.SSO_USERS_PASSWORD_SIGN_IN = True  # passwords allowed: an invitation is of use again
    call_command("send_invitations", "s8000011", stdout=StringIO())
    assert mailoutbox[-1].to == ["sso@example.edu"]


def test_it_invites_everyone_pending_and_dry_runs_without_sending(four_people, mailoutbox):
    invited("s8000005")
    dry = StringIO()

    call_command("send_invitations", "--all-pending", "--dry-run", stdout=dry)
    assert "Dry run: 2 would be sent (s8000001, s8000005)." in dry.getvalue() and mailoutbox == []
    call_command("send_invitations", "--all-pending", stdout=StringIO())

    assert sorted(email.to[0] for email in mailoutbox) == ["s8000001@example.edu", "s8000005@example.edu"]


def test_it_names_unknown_usernames_and_sends_nothing(four_people, mailoutbox):
    with pytest.raises(CommandError, match="No user 'nobody', 'ghost': nothing was sent."):
        call_command("send_invitations", "s8000001", "nobody", "ghost", stdout=StringIO())
    with pytest.raises(CommandError, match="--all-pending"):
        call_command("send_invitations", stdout=StringIO())

    assert mailoutbox == []


def test_it_shows_examples_in_the_help(capsys):
    with pytest.raises(SystemExit):
        call_command("send_invitations", "--help")

    assert "manage.py send_invitations --all-pending --dry-run" in capsys.readouterr().out


# --- the password reset form -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_it_sends_an_invitation_from_the_reset_form_to_a_person_without_a_password(client, mailoutbox):
    person = invited("s8000001", language="fr")

    response = client.post("/password-reset/", {"email": "S8000001@example.edu"})
    nobody = client.post("/password-reset/", {"email": "nobody@example.edu"})

    assert response["Location"] == nobody["Location"] == "/password-reset/sent/"
    [email] = mailoutbox
    assert email.to == ["s8000001@example.edu"]
    assert "n’a pas encore de mot de passe" in email.body
    done = accept(Client(), path_of(link_in(email)))
    assert done["Location"] == "/inbox/"
    person.refresh_from_db()
    assert person.check_password("a-long-new-password-42")


@pytest.mark.django_db
def test_it_still_sends_a_reset_link_to_a_person_with_a_password_and_nothing_to_an_inactive_one(client, mailoutbox):
    make_user("s8000002", email="bob@example.edu")
    inactive = invited("s8000003", email="cy@example.edu")
    User.objects.filter(pk=inactive.pk).update(is_active=False)

    client.post("/password-reset/", {"email": "bob@example.edu"})
    client.post("/password-reset/", {"email": "cy@example.edu"})

    [email] = mailoutbox
    assert email.subject == "Reset your FlashNotify password" and "/password-reset/" in email.body


@pytest.mark.django_db
def test_it_keeps_the_reset_throttle_for_people_without_a_password(client, settings, mailoutbox):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "password_reset": "2/hour"}
    invited("s8000001")

    answers = [client.post("/password-reset/", {"email": "s8000001@example.edu"}).status_code for _ in range(3)]

    assert answers == [302, 302, 200] and len(mailoutbox) == 2


@pytest.mark.parametrize("name", ["INVITATION_TTL_DAYS", "INVITATION_BATCH_SIZE"])
def test_it_reports_a_setting_below_one_as_a_system_check(settings, name):
    setattr(settings, name, 0)

    with pytest.raises(SystemCheckError, match=f"flashnotify.E014.*{name}=0 is below 1"):
        call_command("check")


# --- in the browser ----------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_sets_the_password_in_the_browser_and_lands_signed_in(page, mailoutbox):
    person = invited("s8000001")
    path = invitation_path(person, mailoutbox)
    with_axe(page)

    page.goto(path)
    assert_accessible(page)
    page.get_by_label("New password", exact=True).fill("a-long-new-password-42")
    page.get_by_label("New password confirmation").fill("a-long-new-password-42")
    page.get_by_role("button", name="Set my password").click()
    page.wait_for_load_state()

    assert page.url.endswith("/inbox/")
    assert "Your password is set and you are signed in." in page.content()
    assert_accessible(page)
    page.goto(path)
    assert "has been used already" in page.content()
    assert_accessible(page)
