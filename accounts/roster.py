"""Roster sync, OneRoster 1.2: people, classes as cohorts, teachers as their managers, students as their members.

One service, `roster_import(bundle, *, dry_run, skip_invalid)`, whichever door the roster comes through:
a CSV bundle (a directory or a .zip: `manifest.csv`, `users.csv`, `classes.csv`, `enrollments.csv`, ...),
read by `roster_read_bundle`, or the rostering REST endpoints of a provider, read by
`roster_bundle_from_api`. People are written by `accounts.services.users_upsert`, as the CSV user
import writes them. Nothing is applied unless the whole bundle is valid (or `skip_invalid`);
importing the same roster again changes nothing; a person the roster no longer lists is
deactivated, never deleted, and reactivated when it lists them again.
"""

import csv
import datetime as dt
import io
import logging
import os
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from .models import Cohort, User
from .oneroster import OneRosterClient
from .services import users_upsert

logger = logging.getLogger(__name__)

MODES = ("absent", "bulk", "delta")
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # uncompressed, all files together: a zip bomb is refused

# (required columns, the other columns the 1.2 binding (and 1.1) defines); `metadata.*` extension columns pass.
COLUMNS = {
    "users": (("sourcedId", "username"), (
        "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "roles", "userIds", "givenName",
        "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades", "password",
        "userMasterIdentifier", "resourceSourcedIds", "preferredGivenName", "preferredMiddleName",
        "preferredFamilyName", "primaryOrgSourcedId", "pronouns")),
    "classes": (("sourcedId", "title"), (
        "status", "dateLastModified", "grades", "courseSourcedId", "classCode", "classType", "location",
        "schoolSourcedId", "termSourcedIds", "subjects", "subjectCodes", "periods", "resources")),
    "enrollments": (("sourcedId", "classSourcedId", "userSourcedId", "role"), (
        "status", "dateLastModified", "schoolSourcedId", "primary", "beginDate", "endDate")),
    "orgs": (("sourcedId",), ("status", "dateLastModified", "name", "type", "identifier", "parentSourcedId")),
    "courses": (("sourcedId",), (
        "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode", "grades", "orgSourcedId",
        "subjects", "subjectCodes", "resources")),
    "academicSessions": (("sourcedId",), (
        "status", "dateLastModified", "title", "type", "startDate", "endDate", "parentSourcedId", "schoolYear")),
}
FILES = tuple(COLUMNS)
STATUSES = ("", "active", "tobedeleted", "inactive")  # inactive: OneRoster 1.0/1.1
MEMBER_ROLES = {"student"}
MANAGER_ROLES = {"teacher", "administrator"}
ENROLLMENT_ROLES = MEMBER_ROLES | MANAGER_ROLES | {"proctor", "aide"}


@dataclass
class RosterProblem:
    file: str
    line: int  # 0: the file as a whole
    message: str
    fatal: bool = False  # the file cannot be read at all: --skip-invalid cannot skip it

    def __str__(self):
        return f"{self.file}, line {self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@dataclass
class RosterChange:
    kind: str  # users, classes, enrollments
    action: str
    name: str
    usernames: tuple = ()  # whom it changes, for the admin history
    codes: tuple = ()  # which cohorts it changes

    def __str__(self):
        return f"{self.kind}: {self.action} {self.name}"


@dataclass
class RosterBundle:
    """What a roster holds, as rows keyed by the CSV binding's column names, each with `_file` and `_line`."""

    users: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    enrollments: list = field(default_factory=list)
    modes: dict = field(default_factory=dict)  # {"users": "bulk" | "delta" | "absent", ...}
    problems: list = field(default_factory=list)
    source: str = ""


KINDS = ("users", "classes", "enrollments")
ACTIONS = {
    "users": ("created", "updated", "reactivated", "deactivated"),
    "classes": ("created", "linked", "updated", "closed"),
    "enrollments": ("joined", "moved", "left", "manager added", "manager removed"),
}


@dataclass
class RosterReport:
    changes: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    dry_run: bool = False
    applied: bool = False
    refused: bool = False

    def counts(self):
        """{kind: {action: n}} of the changes, only those that happened."""
        counts = {}
        for change in self.changes:
            counts.setdefault(change.kind, {}).setdefault(change.action, 0)
            counts[change.kind][change.action] += 1
        return counts

    def summary(self):
        """One line: "users: 2 created, 1 deactivated; enrollments: 1 moved", or "0 changes"."""
        counts = self.counts()
        parts = [f"{kind}: " + ", ".join(f"{counts[kind][action]} {action}" for action in ACTIONS[kind]
                                          if action in counts[kind])
                 for kind in KINDS if kind in counts]
        return "; ".join(parts) or "0 changes"

    def lines(self):
        """Each change on a line, grouped by kind and action."""
        order = {(kind, action): i for i, (kind, action) in
                 enumerate((k, a) for k in KINDS for a in ACTIONS[k])}
        return [str(change) for change in sorted(self.changes, key=lambda c: (order[(c.kind, c.action)], c.name))]


# --- reading a CSV bundle -------------------------------------------------------------------

def roster_read_bundle(source):
    """Read a OneRoster 1.2 CSV bundle: a directory, a .zip file's path, or a binary file object holding a zip.

    Returns a RosterBundle; what cannot be read (no manifest, a file the manifest says is there but
    is not, a wrong header, a row with more cells than the header) is in its `problems`, with file and line.
    """
    name = str(getattr(source, "name", source))
    bundle = RosterBundle(source=name)
    try:
        texts = _bundle_texts(source)
    except (OSError, zipfile.BadZipFile) as exc:
        bundle.problems.append(RosterProblem(os.path.basename(name) or name, 0,
                                             f"not a directory or a zip file ({exc})", fatal=True))
        return bundle
    except ValueError as exc:
        bundle.problems.append(RosterProblem(os.path.basename(name) or name, 0, str(exc), fatal=True))
        return bundle
    manifest = _read_manifest(texts, bundle)
    if manifest is None:
        return bundle
    for kind in FILES:
        filename = f"{kind}.csv"
        declared = manifest.get(f"file.{kind}")
        mode, line = declared if declared else ("bulk" if filename in texts else "absent", 0)
        bundle.modes[kind] = mode
        if mode == "absent":
            continue
        if filename not in texts:
            where = f"manifest.csv line {line} says it is {mode}" if line else "the bundle holds no such file"
            bundle.problems.append(RosterProblem(filename, 0, f"missing: {where}.", fatal=True))
            bundle.modes[kind] = "absent"
            continue
        try:
            rows = _read_csv(kind, texts[filename], bundle.problems)
        except UnicodeDecodeError:
            bundle.problems.append(RosterProblem(filename, 0, "not UTF-8 text.", fatal=True))
            continue
        if kind in KINDS:
            setattr(bundle, kind, rows)
    return bundle


def _bundle_texts(source):
    """{file name: bytes} of the bundle's files (at its root, or in its one top folder)."""
    wanted = {"manifest.csv", *(f"{kind}.csv" for kind in FILES)}
    texts = {}
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        for filename in wanted:
            path = os.path.join(source, filename)
            if os.path.isfile(path):
                with open(path, "rb") as stream:
                    texts[filename] = stream.read(MAX_BUNDLE_BYTES + 1)
    else:
        with zipfile.ZipFile(source) as archive:
            members = [info for info in archive.infolist()
                       if not info.is_dir() and os.path.basename(info.filename) in wanted
                       and "__MACOSX" not in info.filename]
            if sum(info.file_size for info in members) > MAX_BUNDLE_BYTES:
                raise ValueError(f"larger than {MAX_BUNDLE_BYTES // 2 ** 20} MB uncompressed.")
            for info in sorted(members, key=lambda i: i.filename.count("/")):
                texts.setdefault(os.path.basename(info.filename), archive.read(info))
    if sum(len(text) for text in texts.values()) > MAX_BUNDLE_BYTES:
        raise ValueError(f"larger than {MAX_BUNDLE_BYTES // 2 ** 20} MB.")
    return texts


def _read_manifest(texts, bundle):
    """{property: (value, line)}, or None (with a fatal problem) when the manifest cannot be used."""
    if "manifest.csv" not in texts:
        bundle.problems.append(RosterProblem("manifest.csv", 0, "missing: a OneRoster bundle starts with its "
                                                                "manifest.", fatal=True))
        return None
    try:
        reader = csv.reader(io.StringIO(texts["manifest.csv"].decode("utf-8-sig"), newline=""))
        rows = list(reader)
    except UnicodeDecodeError:
        bundle.problems.append(RosterProblem("manifest.csv", 0, "not UTF-8 text.", fatal=True))
        return None
    except csv.Error as exc:
        bundle.problems.append(RosterProblem("manifest.csv", 0, f"not CSV ({exc}).", fatal=True))
        return None
    header = [cell.strip() for cell in rows[0]] if rows else []
    if header != ["propertyName", "value"]:
        bundle.problems.append(RosterProblem("manifest.csv", 1, f"the header is {','.join(header) or 'empty'}; "
                                                                "expected propertyName,value.", fatal=True))
        return None
    properties, ok = {}, True
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            bundle.problems.append(RosterProblem("manifest.csv", number, f"{len(row)} cells; expected 2.",
                                                 fatal=True))
            ok = False
            continue
        key, value = row[0].strip(), row[1].strip()
        if key.startswith("file.") and value not in MODES:
            bundle.problems.append(RosterProblem("manifest.csv", number, f"{key} is {value!r}; expected "
                                                                         "absent, bulk or delta.", fatal=True))
            ok = False
            continue
        properties[key] = (value, number)
    for key, expected in (("manifest.version", "1.0"), ("oneroster.version", "1.2")):
        value, number = properties.get(key, ("", 0))
        if value != expected:
            said = f"is {value!r}" if number else "is missing"
            bundle.problems.append(RosterProblem("manifest.csv", number, f"{key} {said}; this import reads "
                                                                         f"{key} {expected}.", fatal=True))
            ok = False
    return properties if ok else None


def _read_csv(kind, data, problems):
    """Rows of one file, with `_file` and `_line`; a wrong header is a fatal problem (and no rows)."""
    filename = f"{kind}.csv"
    required, optional = COLUMNS[kind]
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        header = [cell.strip() for cell in next(reader, [])]
        missing = [name for name in required if name not in header]
        unknown = [name for name in header
                   if name not in required and name not in optional and not name.startswith("metadata.")]
        if missing or unknown or len(set(header)) != len(header):
            said = []
            if missing:
                said.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                said.append(f"unknown column(s) {', '.join(unknown)}")
            if len(set(header)) != len(header):
                said.append("a column named twice")
            problems.append(RosterProblem(filename, 1, f"wrong header: {'; '.join(said)}.", fatal=True))
            return []
        rows = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            line = reader.line_num
            if len(cells) > len(header):
                problems.append(RosterProblem(filename, line, f"{len(cells) - len(header)} more cell(s) than "
                                                              "the header."))
                rows.append({"_file": filename, "_line": line, "_invalid": True,
                             "sourcedId": cells[header.index("sourcedId")].strip()})
                continue
            row = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
            rows.append({**row, "_file": filename, "_line": line})
        return rows
    except csv.Error as exc:
        problems.append(RosterProblem(filename, 0, f"not CSV ({exc}).", fatal=True))
        return []


# --- reading the REST endpoints -------------------------------------------------------------

def roster_bundle_from_api(records):
    """The specification's JSON records ({"users": [...], "classes": [...], "enrollments": [...]}) as a bundle.

    Every collection is read whole, so each counts as `bulk`; `_file` names the endpoint, `_line` the record.
    """
    def text(value):
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value).strip()

    def ref(record, key):
        value = record.get(key)
        return text(value.get("sourcedId")) if isinstance(value, dict) else text(value)

    columns = {
        "users": ("sourcedId", "status", "enabledUser", "username", "givenName", "familyName", "email", "sms",
                  "phone"),
        "classes": ("sourcedId", "status", "title", "classCode"),
        "enrollments": ("sourcedId", "status", "role", "beginDate", "endDate"),
    }
    references = {"classes": {"courseSourcedId": "course", "schoolSourcedId": "school"},
                  "enrollments": {"classSourcedId": "class", "userSourcedId": "user", "schoolSourcedId": "school"}}
    bundle = RosterBundle(source="OneRoster REST", modes={kind: "bulk" for kind in KINDS})
    for kind in KINDS:
        rows = []
        for number, record in enumerate(records.get(kind) or [], start=1):
            if not isinstance(record, dict):
                bundle.problems.append(RosterProblem(f"/{kind}", number, "not a JSON object."))
                continue
            row = {name: text(record.get(name)) for name in columns[kind]}
            row.update({name: ref(record, key) for name, key in references.get(kind, {}).items()})
            rows.append({**row, "_file": f"/{kind}", "_line": number})
        setattr(bundle, kind, rows)
    return bundle


def roster_sync_from_api():
    """Read the configured OneRoster REST provider (ONEROSTER_* settings) and import what it lists.

    What the scheduled sync runs. Returns the report; raises OneRosterError when the provider cannot be read.
    """
    client = OneRosterClient(base_url=settings.ONEROSTER_BASE_URL, token_url=settings.ONEROSTER_TOKEN_URL,
                             client_id=settings.ONEROSTER_CLIENT_ID, client_secret=settings.ONEROSTER_CLIENT_SECRET,
                             scope=settings.ONEROSTER_SCOPE, page_size=settings.ONEROSTER_PAGE_SIZE)
    report = roster_import(roster_bundle_from_api(client.read()))
    if report.refused:
        logger.warning("roster sync refused, nothing applied: %s", "; ".join(map(str, report.problems[:20])))
    else:
        logger.info("roster sync: %s", report.summary())
    return report


# --- importing --------------------------------------------------------------------------------

def roster_import(bundle, *, dry_run=False, skip_invalid=False):
    """Make people, cohorts and memberships what the roster says. Returns a RosterReport.

    `bundle` is a RosterBundle, or what `roster_read_bundle` reads (a directory, a zip path or file).
    Users match by sourcedId (`User.institutional_id`), then username; classes become cohorts
    (`Cohort.roster_id`), their students its members, their teachers and administrators its
    managers. With problems, nothing is applied (`refused`) unless `skip_invalid`, which applies the
    valid rows and keeps everything an invalid row touches as it was; a file that cannot be read
    refuses the bundle either way. `dry_run` computes the same changes and writes nothing.
    """
    if not isinstance(bundle, RosterBundle):
        bundle = roster_read_bundle(bundle)
    report = RosterReport(dry_run=dry_run, problems=list(bundle.problems))
    if any(problem.fatal for problem in report.problems):
        report.refused = True
        return report
    plan = _Plan(bundle, report)
    plan.check()
    if report.problems and not skip_invalid:
        report.refused = True
        return report
    plan.compute()
    if report.refused or dry_run:
        return report
    with transaction.atomic():
        plan.apply()
    report.applied = True
    logger.info("roster import from %s: %s", bundle.source or "a bundle", report.summary())
    return report


def _active(row):
    return row.get("status", "").lower() in ("", "active") and row.get("enabledUser", "").lower() != "false"


def _chunks(values, size=900):
    """Lists of at most `size` values: a query's IN stays under SQLite's limit on parameters, whatever the roster's size."""
    values = list(values)
    return [values[start:start + size] for start in range(0, len(values), size)]


def _date(value):
    return dt.date.fromisoformat(value[:10]) if value else None


class _Plan:
    """The difference between the roster and the database, computed first, then applied."""

    def __init__(self, bundle, report):
        self.bundle, self.report = bundle, report
        self.today = timezone.localdate()

    def problem(self, row, message):
        self.report.problems.append(RosterProblem(row["_file"], row["_line"], message))

    # -- checking every row --------------------------------------------------------------------

    def check(self):
        self.user_rows, self.invalid_users = self.check_users()
        self.class_rows = self.check_classes()
        self.enrollment_rows, self.kept_pairs = self.check_enrollments()
        self.report.problems.sort(key=lambda p: (FILES.index(p.file[:-4]) if p.file[:-4] in FILES else 0,
                                                 p.file, p.line))

    def unique_rows(self, rows, kind):
        """Rows with a sourcedId and a known status, each sourcedId once; the others are problems."""
        valid, seen = [], {}
        for row in rows:
            if row.get("_invalid"):
                continue
            sourced_id = row.get("sourcedId", "")
            if not sourced_id:
                self.problem(row, f"a {kind[:-1]} without a sourcedId.")
            elif sourced_id in seen:
                self.problem(row, f"sourcedId {sourced_id} is already on line {seen[sourced_id]}.")
            elif row.get("status", "").lower() not in STATUSES:
                self.problem(row, f"status {row['status']!r} is neither active nor tobedeleted.")
            else:
                seen[sourced_id] = row["_line"]
                valid.append(row)
        return valid

    def check_users(self):
        rows = self.unique_rows(self.bundle.users, "users")
        invalid = {row.get("sourcedId") for row in self.bundle.users if row.get("_invalid")}
        live = []
        for row in rows:
            if row.get("enabledUser", "").lower() not in ("", "true", "false"):
                self.problem(row, f"enabledUser {row['enabledUser']!r} is neither true nor false.")
                invalid.add(row["sourcedId"])
            elif row.get("status", "").lower() in ("tobedeleted", "inactive"):
                live.append(row)  # deactivated by its sourcedId: no username needed
            elif not row.get("username"):
                self.problem(row, f"user {row['sourcedId']} has no username.")
                invalid.add(row["sourcedId"])
            else:
                live.append(row)
        # Everything else about a person (email, phone, name lengths, the username's characters, a
        # username held by someone else) is checked as the CSV user import checks it.
        by_id = {row["sourcedId"]: row for row in live if row.get("username")}
        phones = self.existing_phones(by_id.values())
        upsert_rows = []
        for row in by_id.values():
            upsert = {"username": row["username"], "institutional_id": row["sourcedId"], "_line": row["_line"],
                      "first_name": row.get("givenName", ""), "last_name": row.get("familyName", ""),
                      "email": row.get("email", ""), "is_active": "true" if _active(row) else "false"}
            phone = row.get("sms") or row.get("phone")
            # A number the person already has (maybe confirmed by them) is theirs to change, not the roster's.
            if phone and not phones.get(row["sourcedId"]):
                upsert["phone"] = phone
            upsert_rows.append(upsert)
        self.upsert_rows = upsert_rows
        checked = users_upsert(upsert_rows, dry_run=True)
        line_to_row = {row["_line"]: row for row in by_id.values()}
        self.user_results = {}
        for result in checked.rows:
            row = line_to_row[result.line]
            sourced_id = row["sourcedId"]
            if result.action == "invalid":
                invalid.add(sourced_id)
                for name, messages in result.errors.items():
                    self.problem(row, f"{name}: {' '.join(messages)}")
            else:
                self.user_results[sourced_id] = result
        valid = {row["sourcedId"]: row for row in live if row["sourcedId"] not in invalid}
        return valid, invalid

    def existing_phones(self, rows):
        ids = [row["sourcedId"] for row in rows]
        usernames = [row["username"] for row in rows]
        phones, by_username = {}, {}
        for chunk in _chunks(ids):
            phones.update(User.objects.filter(institutional_id__in=chunk).exclude(phone="")
                          .values_list("institutional_id", "phone"))
        for chunk in _chunks(usernames):
            by_username.update(User.objects.filter(username__in=chunk, institutional_id__isnull=True)
                               .exclude(phone="").values_list("username", "phone"))
        for row in rows:
            if row["username"] in by_username:
                phones.setdefault(row["sourcedId"], by_username[row["username"]])
        return phones

    def check_classes(self):
        valid = {}
        for row in self.unique_rows(self.bundle.classes, "classes"):
            if _active(row) and not row.get("title"):
                self.problem(row, f"class {row['sourcedId']} has no title.")
                continue
            valid[row["sourcedId"]] = row
        self.invalid_classes = {row.get("sourcedId") for row in self.bundle.classes} - set(valid)
        return valid

    def check_enrollments(self):
        known_classes = set(self.class_rows) | self.invalid_classes
        if self.bundle.modes.get("classes") != "bulk":
            known_classes |= set(Cohort.objects.filter(roster_id__isnull=False).values_list("roster_id", flat=True))
        known_users = set(self.user_rows) | self.invalid_users
        if self.bundle.modes.get("users") != "bulk":
            wanted = {row.get("userSourcedId") for row in self.bundle.enrollments} - known_users
            for chunk in _chunks(wanted):
                known_users |= set(User.objects.filter(institutional_id__in=chunk)
                                   .values_list("institutional_id", flat=True))
        valid, kept = [], set()
        for row in self.unique_rows(self.bundle.enrollments, "enrollments"):
            class_id, user_id, role = row.get("classSourcedId", ""), row.get("userSourcedId", ""), row.get("role", "")
            errors = []
            if not class_id:
                errors.append("no classSourcedId.")
            elif class_id not in known_classes:
                errors.append(f"unknown class {class_id} (not in classes.csv).")
            if not user_id:
                errors.append("no userSourcedId.")
            elif user_id not in known_users:
                errors.append(f"unknown user {user_id} (not in users.csv).")
            if role not in ENROLLMENT_ROLES and not role.startswith("ext:"):
                errors.append(f"role {role!r} is not one of {', '.join(sorted(ENROLLMENT_ROLES))}.")
            for name in ("beginDate", "endDate"):
                try:
                    _date(row.get(name, ""))
                except ValueError:
                    errors.append(f"{name} {row[name]!r} is not a date (YYYY-MM-DD).")
            if errors:
                for message in errors:
                    self.problem(row, message)
                kept.add((class_id, user_id))
            elif class_id in self.invalid_classes or user_id in self.invalid_users:
                kept.add((class_id, user_id))  # its class or person was skipped: left as it was
            else:
                valid.append(row)
        return valid, kept

    # -- computing the difference --------------------------------------------------------------

    def compute(self):
        report = self.report
        bulk_users = self.bundle.modes.get("users") == "bulk"
        listed = set(self.user_rows) | self.invalid_users
        roster_people = {}
        for chunk in _chunks(listed):
            roster_people.update((u.institutional_id, u) for u in User.objects.filter(institutional_id__in=chunk))
        if bulk_users:
            roster_people.update((u.institutional_id, u) for u in User.objects.filter(
                roster_managed=True, is_active=True).exclude(institutional_id__isnull=True))
        if bulk_users and not self.user_rows and not self.invalid_users \
                and any(u.roster_managed and u.is_active for u in roster_people.values()):
            report.problems.append(RosterProblem("users.csv", 0, "lists nobody: refusing to deactivate everyone the "
                                                                 "roster provisioned.", fatal=True))
            report.refused = True
            return
        # People: created or updated by users_upsert; deactivated when tobedeleted, disabled or gone.
        self.deactivate, self.link = [], []
        self.active_after = {key: u.is_active for key, u in roster_people.items()}
        self.names = {key: u.username for key, u in roster_people.items()}
        for sourced_id, row in self.user_rows.items():
            name = f"{row.get('username') or sourced_id}"
            full = " ".join(part for part in (row.get("givenName"), row.get("familyName")) if part)
            label = f"{name} ({full})" if full else name
            self.names[sourced_id] = row.get("username") or self.names.get(sourced_id, sourced_id)
            result = self.user_results.get(sourced_id)
            if result is None:  # tobedeleted: deactivate whoever holds the id
                person = roster_people.get(sourced_id)
                if person is not None and person.is_active:
                    self.deactivate.append(person.pk)
                    report.changes.append(RosterChange("users", "deactivated", label, (person.username,)))
                self.active_after[sourced_id] = False
                continue
            active = _active(row)
            self.active_after[sourced_id] = active
            person = roster_people.get(sourced_id)
            if person is not None and not person.roster_managed:
                self.link.append(person.pk)
            if result.action == "created":
                report.changes.append(RosterChange("users", "created", label, (row["username"],)))
            elif result.action == "updated":
                action = ("reactivated" if active and not result.was_active
                          else "deactivated" if result.was_active and not active else "updated")
                fields = [f for f in result.fields if f != "is_active"]
                report.changes.append(RosterChange("users", action, label + (f": {', '.join(fields)}"
                                                                             if fields else ""), (row["username"],)))
            elif person is not None and not person.roster_managed:
                report.changes.append(RosterChange("users", "updated", f"{label}: now kept by the roster",
                                                   (row["username"],)))
        if bulk_users:
            for key, person in roster_people.items():
                if key not in listed and person.roster_managed and person.is_active:
                    self.deactivate.append(person.pk)
                    self.active_after[key] = False
                    report.changes.append(RosterChange("users", "deactivated", f"{person.username}: no longer in "
                                                                               "the roster", (person.username,)))
        self.compute_classes()
        self.compute_enrollments()

    def compute_classes(self):
        report, bulk = self.report, self.bundle.modes.get("classes") == "bulk"
        cohorts = {c.roster_id: c for c in Cohort.objects.filter(roster_id__isnull=False)}
        self.cohorts = cohorts
        self.new_cohorts, self.renamed, self.adopted, self.closed = {}, [], {}, set()
        taken = set(Cohort.objects.values_list("code", flat=True))
        unlinked = dict(Cohort.objects.filter(roster_id__isnull=True).values_list("code", "pk"))
        claimed = set()
        for sourced_id, row in self.class_rows.items():
            cohort = cohorts.get(sourced_id)
            if not _active(row):
                self.closed.add(sourced_id)
                continue
            title = row["title"][:200]
            if cohort is not None:
                if cohort.name != title:
                    cohort.name = title
                    self.renamed.append(cohort)
                    report.changes.append(RosterChange("classes", "updated", f"{cohort.code}: title {title}",
                                                       codes=(cohort.code,)))
                continue
            base = slugify(row.get("classCode") or title)[:64] or slugify(sourced_id)[:64] or "class"
            if base in unlinked and base not in claimed:
                # A cohort made by hand for this class: the roster keeps it from now on.
                claimed.add(base)
                self.adopted[sourced_id] = unlinked[base]
                report.changes.append(RosterChange("classes", "linked", f"{base} ({title}): an existing cohort, now "
                                                                        "kept by the roster", codes=(base,)))
                continue
            code, n = base, 1
            while code in taken or code in claimed:
                n += 1
                suffix = f"-{slugify(sourced_id)[:20]}" if n == 2 else f"-{slugify(sourced_id)[:20]}-{n}"
                code = base[:64 - len(suffix)] + suffix
            claimed.add(code)
            self.new_cohorts[sourced_id] = Cohort(code=code, name=title, roster_id=sourced_id)
            report.changes.append(RosterChange("classes", "created", f"{code} ({title})", codes=(code,)))
        if bulk:
            self.closed |= set(cohorts) - set(self.class_rows) - self.invalid_classes
        self.codes = {**{key: c.code for key, c in cohorts.items()},
                      **{key: c.code for key, c in self.new_cohorts.items()}}
        adopted_codes = {pk: code for code, pk in unlinked.items()}
        self.codes.update({key: adopted_codes[pk] for key, pk in self.adopted.items()})

    def current_memberships(self):
        """{(class sourcedId, role): {user key}}, user key: the institutional id, or "#pk" without one."""
        current = defaultdict(set)
        cohort_keys = {c.pk: key for key, c in self.cohorts.items()}
        cohort_keys.update({pk: key for key, pk in self.adopted.items()})
        self.user_pks = {}
        for role, through in (("member", Cohort.members.through), ("manager", Cohort.managers.through)):
            for cohort_id, user_id, institutional_id, username in through.objects.filter(
                    cohort_id__in=list(cohort_keys)).values_list(
                    "cohort_id", "user_id", "user__institutional_id", "user__username"):
                key = institutional_id or f"#{user_id}"
                current[(cohort_keys[cohort_id], role)].add(key)
                self.user_pks[key] = user_id
                self.names.setdefault(key, username)
        return current

    def compute_enrollments(self):
        current = self.current_memberships()
        wanted = defaultdict(set)
        if self.bundle.modes.get("enrollments") == "bulk":
            for key in (*self.cohorts, *self.new_cohorts, *self.adopted):
                wanted[(key, "member")], wanted[(key, "manager")] = set(), set()
        else:
            for key, users in current.items():
                wanted[key] = set(users)
        for row in self.enrollment_rows:
            role = "member" if row["role"] in MEMBER_ROLES else "manager" if row["role"] in MANAGER_ROLES else None
            if role is None:
                continue
            begin, end = _date(row.get("beginDate", "")), _date(row.get("endDate", ""))
            running = _active(row) and (begin is None or begin <= self.today) and (end is None or self.today <= end)
            target = wanted[(row["classSourcedId"], role)]
            (target.add if running else target.discard)(row["userSourcedId"])
        for key in self.closed:
            wanted[(key, "member")], wanted[(key, "manager")] = set(), set()
        for key, users in wanted.items():
            wanted[key] = {user for user in users if self.active_after.get(user, True)}
        # An invalid row (with --skip-invalid) leaves what it touches as it was.
        for class_id, user_id in self.kept_pairs:
            for role in ("member", "manager"):
                if (class_id, role) in wanted:
                    (wanted[(class_id, role)].add if user_id in current[(class_id, role)]
                     else wanted[(class_id, role)].discard)(user_id)
        for user_id in self.invalid_users:
            for (class_id, role), users in wanted.items():
                (users.add if user_id in current[(class_id, role)] else users.discard)(user_id)
        self.added = {key: users - current[key] for key, users in wanted.items() if users - current[key]}
        self.removed = {key: current[key] - users for key, users in wanted.items() if current[key] - users}
        self.describe_enrollments()

    def describe_enrollments(self):
        joined, left = defaultdict(list), defaultdict(list)
        for changes, verb, moves in ((self.added, "manager added", joined), (self.removed, "manager removed", left)):
            for (class_id, role), users in changes.items():
                for user in users:
                    code, name = self.codes[class_id], self.names.get(user, user)
                    if role == "member":
                        moves[user].append(code)
                    else:
                        self.report.changes.append(RosterChange("enrollments", verb, f"{name} of {code}", (name,),
                                                                (code,)))
        for user in set(joined) | set(left):
            name = self.names.get(user, user)
            into, out = sorted(joined[user]), sorted(left[user])
            if into and out:
                action, text = "moved", f"{name} from {', '.join(out)} to {', '.join(into)}"
            elif into:
                action, text = "joined", f"{name} to {', '.join(into)}"
            else:
                action, text = "left", f"{name} from {', '.join(out)}"
            self.report.changes.append(RosterChange("enrollments", action, text, (name,), (*out, *into)))

    # -- applying it -------------------------------------------------------------------------------

    def apply(self):
        users_upsert(self.upsert_rows_valid())
        if self.deactivate:
            # As User.save does on deactivation: every session and token they had ends.
            for chunk in _chunks(self.deactivate):
                User.objects.filter(pk__in=chunk, is_active=True).update(
                    is_active=False, auth_version=F("auth_version") + 1)
        for chunk in _chunks(self.user_rows):
            User.objects.filter(institutional_id__in=chunk, roster_managed=False).update(roster_managed=True)
        for cohort in self.renamed:
            cohort.save(update_fields=["name"])
        for sourced_id, pk in self.adopted.items():
            Cohort.objects.filter(pk=pk).update(roster_id=sourced_id)
        Cohort.objects.bulk_create(self.new_cohorts.values())
        cohort_pks = dict(Cohort.objects.filter(roster_id__isnull=False).values_list("roster_id", "pk"))
        keys = {user for users in (*self.added.values(), *self.removed.values()) for user in users}
        for chunk in _chunks(k for k in keys if not k.startswith("#")):
            self.user_pks.update(User.objects.filter(institutional_id__in=chunk).values_list("institutional_id", "pk"))
        for role, through in (("member", Cohort.members.through), ("manager", Cohort.managers.through)):
            for (class_id, kind), users in self.removed.items():
                if kind == role:
                    for chunk in _chunks(self.user_pks[u] for u in users):
                        through.objects.filter(cohort_id=cohort_pks[class_id], user_id__in=chunk).delete()
            through.objects.bulk_create([through(cohort_id=cohort_pks[class_id], user_id=self.user_pks[user])
                                         for (class_id, kind), users in self.added.items() if kind == role
                                         for user in users], batch_size=500)

    def upsert_rows_valid(self):
        return [row for row in self.upsert_rows if row["institutional_id"] in self.user_results]
