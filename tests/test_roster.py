"""Roster sync, OneRoster 1.2: a CSV bundle or the REST endpoints make people, cohorts and memberships."""

import base64
import zipfile
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from accounts.models import Cohort, User
from accounts.roster import roster_import, roster_sync_from_api
from accounts.tasks import roster_sync
from channels_app.constants import Category, Channel
from channels_app.registry import get_notifier
from notifications.engine.planning import DeliveryPlanner
from notifications.engine.queue import ROSTER_SCHEDULE, ensure_roster_schedule
from notifications.models import Delivery, Notification

from .conftest import make_user

MANIFEST = {"manifest.version": "1.0", "oneroster.version": "1.2", "file.academicSessions": "bulk",
            "file.categories": "absent", "file.classes": "bulk", "file.classResources": "absent",
            "file.courses": "bulk", "file.courseResources": "absent", "file.demographics": "absent",
            "file.enrollments": "bulk", "file.lineItems": "absent", "file.orgs": "bulk", "file.resources": "absent",
            "file.results": "absent", "file.users": "bulk", "source.systemName": "Test SIS"}
USERS_HEADER = ("sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,"
                "identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,"
                "preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns")
CLASSES_HEADER = ("sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
                  "schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods")
ENROLLMENTS_HEADER = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary," \
                     "beginDate,endDate"
ORGS = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\norg1,active,,Test University,school,,\n"
COURSES = ("sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,"
           "subjectCodes\ncrs1,active,,term1,Computer Science,CS101,,org1,,\n")
SESSIONS = ("sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n"
            "term1,active,,Autumn 2026,term,2026-09-01,2027-01-31,,2027\n")


def user(sourced_id, username, given, family, *, email=None, status="active", enabled="true", phone=""):
    email = f"{username}@students.example.edu" if email is None else email
    return (f"{sourced_id},{status},2026-09-01T00:00:00Z,{enabled},{username},,{given},{family},,,{email},{phone},,,,,,,"
            f",,,org1,")


def klass(sourced_id, title, code, status="active"):
    return f"{sourced_id},{status},2026-09-01T00:00:00Z,{title},,crs1,{code},scheduled,,org1,term1,,,"


def enrol(sourced_id, class_id, user_id, role, status="active", begin="", end=""):
    return f"{sourced_id},{status},2026-09-01T00:00:00Z,{class_id},org1,{user_id},{role},false,{begin},{end}"


USERS = [user("u-ada", "s9000001", "Ada", "Lovelace", phone="+33612345678"), user("u-bob", "s9000002", "Bob", "Byron"),
         user("u-cy", "s9000003", "Cy", "Clerk"), user("u-tom", "t9000001", "Tom", "Teacher"),
         user("u-tia", "t9000002", "Tia", "Tutor")]
CLASSES = [klass("c-cs", "Computer Science 101", "CS101-A"), klass("c-ma", "Mathematics 201", "MA201-A")]
ENROLLMENTS = [enrol("e1", "c-cs", "u-ada", "student"), enrol("e2", "c-cs", "u-bob", "student"),
               enrol("e3", "c-ma", "u-cy", "student"), enrol("e4", "c-cs", "u-tom", "teacher"),
               enrol("e5", "c-ma", "u-tia", "teacher")]


def bundle(tmp_path, name="bundle", *, users=USERS, classes=CLASSES, enrollments=ENROLLMENTS, manifest=None,
           files=None, drop=(), as_zip=False):
    """Write a OneRoster 1.2 CSV bundle (a directory, or a zip of it) and return its path."""
    contents = {
        "manifest.csv": "propertyName,value\n" + "".join(f"{k},{v}\n" for k, v in {**MANIFEST, **(manifest or {})}.items()),
        "orgs.csv": ORGS, "courses.csv": COURSES, "academicSessions.csv": SESSIONS,
        "users.csv": USERS_HEADER + "\n" + "".join(f"{row}\n" for row in users),
        "classes.csv": CLASSES_HEADER + "\n" + "".join(f"{row}\n" for row in classes),
        "enrollments.csv": ENROLLMENTS_HEADER + "\n" + "".join(f"{row}\n" for row in enrollments),
        **(files or {}),
    }
    for filename in drop:
        contents.pop(filename)
    if as_zip:
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for filename, text in contents.items():
                archive.writestr(filename, text)
        return path
    directory = tmp_path / name
    directory.mkdir()
    for filename, text in contents.items():
        (directory / filename).write_text(text)
    return directory


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("import_roster", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def members(code):
    return sorted(Cohort.objects.get(code=code).members.values_list("username", flat=True))


def managers(code):
    return sorted(Cohort.objects.get(code=code).managers.values_list("username", flat=True))


def test_it_imports_a_bundle_then_a_second_import_changes_nothing(db, tmp_path):
    path = bundle(tmp_path)

    out, _ = run(path)

    assert "users: 5 created; classes: 2 created; enrollments: 3 joined, 2 manager added" in out
    ada = User.objects.get(institutional_id="u-ada")
    assert (ada.username, ada.first_name, ada.last_name, ada.email, ada.phone) == (
        "s9000001", "Ada", "Lovelace", "s9000001@students.example.edu", "+33612345678")
    assert ada.roster_managed and ada.is_active and not ada.has_usable_password()
    assert ada.has_role("User")
    assert members("cs101-a") == ["s9000001", "s9000002"] and managers("cs101-a") == ["t9000001"]
    assert members("ma201-a") == ["s9000003"] and managers("ma201-a") == ["t9000002"]
    assert Cohort.objects.get(code="cs101-a").name == "Computer Science 101"

    again, _ = run(path)

    assert "Imported: 0 changes." in again


def test_it_applies_a_changed_bundle_incrementally_and_keeps_a_dropped_students_history(db, tmp_path):
    run(bundle(tmp_path, "first"))
    bob = User.objects.get(username="s9000002")
    notification = Notification.objects.create(notifier="academic", category=Category.ANNOUNCEMENT, title="Hello",
                                               body="Hi", audience={"cohorts": ["cs101-a"]})
    Delivery.objects.create(notification=notification, recipient=bob, channel=Channel.EMAIL)
    changed = bundle(
        tmp_path, "second",
        users=[row for row in USERS if "u-bob" not in row] + [user("u-dee", "s9000004", "Dee", "Dunn")],
        enrollments=[enrol("e1", "c-ma", "u-ada", "student"),  # Ada moves from CS101 to MA201
                     enrol("e3", "c-ma", "u-cy", "student"), enrol("e4", "c-cs", "u-tom", "teacher"),
                     enrol("e5", "c-ma", "u-tia", "teacher"),
                     enrol("e6", "c-cs", "u-tia", "teacher"),  # Tia now also teaches CS101
                     enrol("e7", "c-cs", "u-dee", "student")])

    out, _ = run(changed)

    assert "users: 1 created, 1 deactivated" in out
    assert "enrollments: 1 joined, 1 moved, 1 left, 1 manager added" in out
    assert "moved s9000001 from cs101-a to ma201-a" in out
    assert "manager added t9000002 of cs101-a" in out
    assert members("cs101-a") == ["s9000004"] and members("ma201-a") == ["s9000001", "s9000003"]
    assert managers("cs101-a") == ["t9000001", "t9000002"]
    bob.refresh_from_db()
    assert not bob.is_active and bob.auth_version == 1  # deactivated, signed out, never deleted
    assert Delivery.objects.filter(recipient=bob).count() == 1  # their history stays

    back, _ = run(bundle(tmp_path, "third"))  # Bob is in the roster again

    assert "reactivated s9000002" in back
    bob.refresh_from_db()
    assert bob.is_active and members("cs101-a") == ["s9000001", "s9000002"]


def test_it_deactivates_people_marked_tobedeleted_or_disabled(db, tmp_path):
    run(bundle(tmp_path, "first"))

    out, _ = run(bundle(tmp_path, "second", users=[
        user("u-ada", "s9000001", "Ada", "Lovelace", status="tobedeleted"),
        user("u-bob", "s9000002", "Bob", "Byron", enabled="false"), *USERS[2:]]))

    assert "deactivated s9000001" in out and "deactivated s9000002" in out
    assert not User.objects.filter(username__in=["s9000001", "s9000002"], is_active=True).exists()
    assert members("cs101-a") == []


def test_it_matches_existing_people_by_institutional_id_then_username(db, tmp_path):
    renamed = make_user("old-name", institutional_id="u-ada")
    existing = make_user("s9000002", phone="+33699999999")

    run(bundle(tmp_path))

    renamed.refresh_from_db()
    existing.refresh_from_db()
    assert renamed.username == "s9000001" and renamed.roster_managed
    assert existing.institutional_id == "u-bob" and existing.has_usable_password()
    assert User.objects.count() == 5
    assert existing.phone == "+33699999999"  # a number the person has is theirs, not the roster's


def test_it_prints_the_difference_on_a_dry_run_and_writes_nothing(db, tmp_path):
    run(bundle(tmp_path, "first"))

    out, _ = run(bundle(tmp_path, "second", users=[row for row in USERS if "u-bob" not in row],
                        enrollments=[enrol("e1", "c-ma", "u-ada", "student"), *ENROLLMENTS[2:]]), "--dry-run")

    assert "Dry run (nothing written): users: 1 deactivated; enrollments: 1 moved, 1 left." in out
    assert "users: deactivated s9000002: no longer in the roster" in out
    assert "enrollments: moved s9000001 from cs101-a to ma201-a" in out
    assert User.objects.get(username="s9000002").is_active
    assert members("cs101-a") == ["s9000001", "s9000002"]


def test_it_writes_nothing_on_a_dry_run_of_a_new_bundle(db, tmp_path):
    out, _ = run(bundle(tmp_path), "--dry-run")

    assert "users: created s9000001 (Ada Lovelace)" in out and "classes: created cs101-a (Computer Science 101)" in out
    assert "enrollments: joined s9000001 to cs101-a" in out
    assert not User.objects.filter(roster_managed=True).exists() and not Cohort.objects.exists()


@pytest.mark.parametrize("kwargs, expected", [
    ({"drop": ["enrollments.csv"]}, "enrollments.csv: missing: manifest.csv line 11 says it is bulk."),
    ({"drop": ["manifest.csv"]}, "manifest.csv: missing"),
    ({"manifest": {"oneroster.version": "1.1"}}, "manifest.csv, line 3: oneroster.version is '1.1'"),
    ({"manifest": {"file.users": "full"}}, "manifest.csv, line 16: file.users is 'full'"),
    ({"files": {"classes.csv": "sourcedId,status,name\nc-cs,active,CS\n"}},
     "classes.csv, line 1: wrong header: missing column(s) title; unknown column(s) name."),
    ({"users": [*USERS, user("", "s9000009", "No", "Id")]}, "users.csv, line 7: a user without a sourcedId."),
    ({"users": [*USERS, user("u-x", "", "No", "Name")]}, "users.csv, line 7: user u-x has no username."),
    ({"users": [*USERS, user("u-x", "s9000009", "Bad", "Mail", email="not-an-email")]},
     "users.csv, line 7: email: Enter a valid email address."),
    ({"enrollments": [*ENROLLMENTS, enrol("e9", "c-xx", "u-ada", "student")]},
     "enrollments.csv, line 7: unknown class c-xx (not in classes.csv)."),
    ({"enrollments": [*ENROLLMENTS, enrol("e9", "c-cs", "u-ghost", "student")]},
     "enrollments.csv, line 7: unknown user u-ghost (not in users.csv)."),
    ({"enrollments": [*ENROLLMENTS, enrol("e9", "c-cs", "u-ada", "janitor")]},
     "enrollments.csv, line 7: role 'janitor' is not one of"),
])
def test_it_refuses_a_bad_bundle_naming_file_and_line_and_applies_nothing(db, tmp_path, kwargs, expected):
    with pytest.raises(CommandError, match="nothing applied"):
        run(bundle(tmp_path, **kwargs))

    report = roster_import(bundle(tmp_path, "again", **kwargs))
    assert report.refused and not report.applied
    assert any(str(problem).startswith(expected) for problem in report.problems), report.problems
    assert not User.objects.filter(roster_managed=True).exists() and not Cohort.objects.exists()


def test_it_prints_each_problem_on_the_command_line(db, tmp_path):
    path = bundle(tmp_path, users=[*USERS, user("", "s9000009", "No", "Id")],
                  enrollments=[*ENROLLMENTS, enrol("e9", "c-xx", "u-ada", "student")])
    err = StringIO()

    with pytest.raises(CommandError, match="2 problem"):
        call_command("import_roster", str(path), stdout=StringIO(), stderr=err)

    assert "users.csv, line 7: a user without a sourcedId." in err.getvalue()
    assert "enrollments.csv, line 7: unknown class c-xx (not in classes.csv)." in err.getvalue()


def test_it_applies_the_valid_rows_with_skip_invalid_and_lists_the_others(db, tmp_path):
    path = bundle(tmp_path, users=[*USERS, user("u-x", "s9000009", "Bad", "Mail", email="not-an-email")],
                  enrollments=[*ENROLLMENTS, enrol("e9", "c-cs", "u-x", "student"),
                               enrol("e10", "c-xx", "u-ada", "student")])

    out, err = run(path, "--skip-invalid")

    assert "skipped: users.csv, line 7: email: Enter a valid email address." in err
    assert "skipped: enrollments.csv, line 8: unknown class c-xx" in err
    assert "2 invalid row(s) skipped." in out
    assert User.objects.filter(roster_managed=True).count() == 5
    assert not User.objects.filter(username="s9000009").exists()
    assert members("cs101-a") == ["s9000001", "s9000002"]


def test_it_refuses_a_bulk_users_file_that_lists_nobody(db, tmp_path):
    run(bundle(tmp_path, "first"))

    with pytest.raises(CommandError):
        run(bundle(tmp_path, "empty", users=[], enrollments=[]))

    assert User.objects.filter(roster_managed=True, is_active=True).count() == 5


def test_it_reads_a_zip_and_a_delta_enrollments_file(db, tmp_path):
    run(bundle(tmp_path, "first", as_zip=True))
    delta = bundle(tmp_path, "delta", manifest={"file.users": "absent", "file.classes": "absent",
                                                "file.enrollments": "delta"},
                   drop=["users.csv", "classes.csv"],
                   enrollments=[enrol("e2", "c-cs", "u-bob", "student", status="tobedeleted"),
                                enrol("e8", "c-ma", "u-bob", "student")], as_zip=True)

    out, _ = run(delta)

    assert "enrollments: 1 moved" in out
    assert members("cs101-a") == ["s9000001"] and members("ma201-a") == ["s9000002", "s9000003"]
    assert User.objects.filter(roster_managed=True, is_active=True).count() == 5


def test_it_ends_an_enrollment_after_its_end_date(db, tmp_path):
    run(bundle(tmp_path, enrollments=[enrol("e1", "c-cs", "u-ada", "student", end="2020-06-30"), *ENROLLMENTS[1:]]))

    assert members("cs101-a") == ["s9000002"]


def test_it_has_help_with_examples(capsys):
    with pytest.raises(SystemExit):
        call_command("import_roster", "--help")
    assert "manage.py import_roster oneroster.zip --dry-run" in capsys.readouterr().out


# --- enrolled by default ----------------------------------------------------------------------

def test_it_plans_a_delivery_to_a_freshly_imported_student_for_a_default_category(db, tmp_path):
    run(bundle(tmp_path))
    ada = User.objects.get(username="s9000001")
    for notifier, category in [*(("academic", c) for c in get_notifier("academic").categories),
                               ("security", Category.SECURITY)]:
        notification = Notification.objects.create(notifier=notifier, category=category, title="Welcome",
                                                   body="First lecture on Monday.",
                                                   audience={"cohorts": ["cs101-a"]},
                                                   channels=[Channel.EMAIL, Channel.INBOX])
        planner = DeliveryPlanner(notification, get_notifier(notifier))

        planned = {d.channel: d.status for d in planner.plan([ada])}

        assert planned == {Channel.EMAIL: Delivery.Status.QUEUED, Channel.INBOX: Delivery.Status.QUEUED}, category


# --- the console ----------------------------------------------------------------------------

PAGE = "/admin/accounts/user/import-roster/"


def upload(client, path, *, dry_run):
    data = {"bundle": SimpleUploadedFile("roster.zip", path.read_bytes(), content_type="application/zip")}
    if dry_run:
        data["dry_run"] = "on"
    return client.post(PAGE, data)


def test_it_shows_the_difference_then_applies_an_uploaded_bundle_and_records_it(client, admin_user, tmp_path):
    client.force_login(admin_user)
    path = bundle(tmp_path, as_zip=True)

    checked = upload(client, path, dry_run=True)

    assert checked.status_code == 200
    page = checked.content.decode()
    assert "users: 5 created; classes: 2 created; enrollments: 3 joined, 2 manager added" in page
    assert "created s9000001 (Ada Lovelace)" in page
    assert not Cohort.objects.exists()

    applied = upload(client, path, dry_run=False)

    assert applied.context["report"].applied
    assert members("cs101-a") == ["s9000001", "s9000002"]
    entry = LogEntry.objects.get(user=admin_user, object_repr="s9000001")
    assert "OneRoster" in entry.get_change_message()
    assert LogEntry.objects.filter(user=admin_user, object_repr__startswith="cs101-a").exists()

    again = upload(client, path, dry_run=False)
    assert "0 changes" in again.content.decode()

    changed = bundle(tmp_path, "changed", as_zip=True, users=[row for row in USERS if "u-bob" not in row],
                     enrollments=[enrol("e1", "c-ma", "u-ada", "student"), *ENROLLMENTS[2:]])
    moved = upload(client, changed, dry_run=False)
    assert "users: 1 deactivated; enrollments: 1 moved, 1 left" in moved.content.decode()
    assert members("cs101-a") == [] and members("ma201-a") == ["s9000001", "s9000003"]
    assert not User.objects.get(username="s9000002").is_active
    assert LogEntry.objects.filter(user=admin_user, object_repr="s9000002",
                                   change_message__contains="1 deactivated").exists()


def test_it_lists_the_problems_of_an_uploaded_bundle_and_applies_nothing(client, admin_user, tmp_path):
    client.force_login(admin_user)
    path = bundle(tmp_path, as_zip=True, enrollments=[*ENROLLMENTS, enrol("e9", "c-xx", "u-ada", "student")])

    response = upload(client, path, dry_run=False)

    assert "enrollments.csv" in response.content.decode() and "unknown class c-xx" in response.content.decode()
    assert "nothing was applied" in response.content.decode()
    assert not Cohort.objects.exists()


def test_it_refuses_an_upload_that_is_not_a_zip(client, admin_user):
    client.force_login(admin_user)
    response = client.post(PAGE, {"bundle": SimpleUploadedFile("roster.zip", b"not a zip")})
    assert "not a directory or a zip file" in response.content.decode()


def test_it_keeps_the_roster_page_to_administrators(client, staff_user, tmp_path):
    client.force_login(staff_user)

    assert client.get(PAGE).status_code in (302, 403)
    assert upload(client, bundle(tmp_path, as_zip=True), dry_run=False).status_code in (302, 403)
    assert not Cohort.objects.exists()


def test_it_offers_the_roster_import_on_the_users_page(client, admin_user):
    client.force_login(admin_user)
    assert PAGE in client.get("/admin/accounts/user/").content.decode()


# --- the REST client -------------------------------------------------------------------------

def rest_records():
    def ref(kind, sourced_id):
        return {"href": f"/ims/oneroster/rostering/v1p2/{kind}/{sourced_id}", "sourcedId": sourced_id, "type": kind}

    people = [("u-ada", "s9000001", "Ada", "Lovelace", "student"), ("u-bob", "s9000002", "Bob", "Byron", "student"),
              ("u-cy", "s9000003", "Cy", "Clerk", "student"), ("u-tom", "t9000001", "Tom", "Teacher", "teacher")]
    users = [{"sourcedId": sid, "status": "active", "dateLastModified": "2026-09-01T00:00:00.000Z", "enabledUser": True,
              "username": username, "givenName": given, "familyName": family, "email": f"{username}@example.edu",
              "roles": [{"roleType": "primary", "role": role, "org": ref("orgs", "org1")}], "userIds": []}
             for sid, username, given, family, role in people]
    classes = [{"sourcedId": "c-cs", "status": "active", "dateLastModified": "2026-09-01T00:00:00.000Z",
                "title": "Computer Science 101", "classCode": "CS101-A", "classType": "scheduled",
                "course": ref("courses", "crs1"), "school": ref("orgs", "org1"), "terms": [ref("academicSessions", "t")]}]
    enrollments = [{"sourcedId": f"e{i}", "status": "active", "dateLastModified": "2026-09-01T00:00:00.000Z",
                    "role": role, "primary": False, "user": ref("users", sid), "class": ref("classes", "c-cs"),
                    "school": ref("orgs", "org1")} for i, (sid, _, _, _, role) in enumerate(people)]
    return {"users": users, "classes": classes, "enrollments": enrollments}


class RosterProvider:
    """A OneRoster service provider: a token endpoint (client credentials) and paginated collections."""

    def __init__(self, records, *, use_link=False):
        self.records, self.use_link = records, use_link
        self.issued, self.pages = [], []

    def __call__(self, request):
        path, _, query = request["path"].partition("?")
        if path == "/token":
            expected = "Basic " + base64.b64encode(b"client-1:secret-1").decode()
            if request["method"] != "POST" or request["headers"].get("Authorization") != expected \
                    or request["form"].get("grant_type") != "client_credentials":
                return 401, {}, {"error": "invalid_client"}
            token = f"token-{len(self.issued)}"
            self.issued.append((token, request["form"].get("scope")))
            return 200, {}, {"access_token": token, "token_type": "bearer", "expires_in": 3600}
        if request["headers"].get("Authorization") not in {f"Bearer {t}" for t, _ in self.issued}:
            return 401, {}, {"imsx_codeMajor": "failure"}
        kind = path.rsplit("/", 1)[-1]
        if not path.startswith("/ims/oneroster/rostering/v1p2/") or kind not in self.records:
            return 404, {}, {}
        params = dict(part.split("=") for part in query.split("&") if part)
        limit, offset = int(params.get("limit", 100)), int(params.get("offset", 0))
        self.pages.append((kind, limit, offset))
        records = self.records[kind]
        headers = {"X-Total-Count": str(len(records))}
        if self.use_link and offset + limit < len(records):
            headers = {"Link": f'<{path}?limit={limit}&offset={offset + limit}>; rel="next"'}
        return 200, headers, {kind: records[offset:offset + limit]}


@pytest.fixture
def provider(http_peer, settings):
    def start(records, **kwargs):
        responder = RosterProvider(records, **kwargs)
        peer = http_peer(responder)
        settings.ONEROSTER_BASE_URL = peer.url
        settings.ONEROSTER_TOKEN_URL = peer.url + "/token"
        settings.ONEROSTER_CLIENT_ID, settings.ONEROSTER_CLIENT_SECRET = "client-1", "secret-1"
        settings.ONEROSTER_PAGE_SIZE = 2
        return responder
    return start


@pytest.mark.parametrize("use_link", [False, True], ids=["total-count", "link-next"])
def test_it_syncs_from_a_rest_provider_with_a_token_and_pages(db, provider, use_link):
    responder = provider(rest_records(), use_link=use_link)

    report = roster_sync_from_api()

    assert report.applied, report.problems
    assert len(responder.issued) == 1
    assert responder.issued[0][1] == "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly"
    assert ("users", 2, 0) in responder.pages and ("users", 2, 2) in responder.pages
    assert members("cs101-a") == ["s9000001", "s9000002", "s9000003"] and managers("cs101-a") == ["t9000001"]
    assert User.objects.get(institutional_id="u-ada").first_name == "Ada"

    assert roster_sync_from_api().summary() == "0 changes"


def test_it_applies_what_changed_at_the_provider(db, provider):
    records = rest_records()
    responder = provider(records)
    roster_sync_from_api()
    records["users"] = [record for record in records["users"] if record["sourcedId"] != "u-bob"]
    records["enrollments"] = [record for record in records["enrollments"] if record["user"]["sourcedId"] != "u-bob"]
    responder.records = records

    summary = roster_sync()  # what the schedule runs

    assert summary == "users: 1 deactivated; enrollments: 1 left"
    assert not User.objects.get(username="s9000002").is_active


def test_it_raises_when_the_provider_refuses_the_credentials(db, provider, settings):
    provider(rest_records())
    settings.ONEROSTER_CLIENT_SECRET = "wrong"

    with pytest.raises(Exception, match="token endpoint .* answered 401"):
        roster_sync_from_api()
    assert not User.objects.filter(roster_managed=True).exists()


def test_it_installs_the_sync_schedule_only_when_configured(db, settings):
    settings.ONEROSTER_BASE_URL = ""
    ensure_roster_schedule()
    assert not Schedule.objects.filter(name=ROSTER_SCHEDULE).exists()

    settings.ONEROSTER_BASE_URL, settings.ONEROSTER_SYNC_MINUTES = "https://sis.example.edu", 15
    ensure_roster_schedule()
    schedule = Schedule.objects.get(name=ROSTER_SCHEDULE)
    assert (schedule.func, schedule.minutes) == ("accounts.tasks.roster_sync", 15)

    settings.ONEROSTER_BASE_URL = ""
    ensure_roster_schedule()
    assert not Schedule.objects.filter(name=ROSTER_SCHEDULE).exists()


def test_it_shows_the_roster_page_in_french(client, admin_user):
    admin_user.language = "fr"
    admin_user.save()
    client.force_login(admin_user)

    page = client.get(PAGE, HTTP_ACCEPT_LANGUAGE="fr").content.decode()

    assert "Importer un lot OneRoster" in page and "Vérifier et importer" in page
