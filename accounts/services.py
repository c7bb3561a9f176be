"""Writes on accounts: provisioning users and cohort memberships in bulk, API keys, signing out everywhere.

People created by `users_upsert` who will sign in with a password are invited (accounts.invitations):
the workers send the emails once the import's transaction commits.
"""

import csv
import logging
from dataclasses import dataclass, field

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .invitations import invitations_enqueue, user_needs_invitation
from .models import ApiKey, Cohort, Role, User
from .roles import is_admin
from .validators import normalize_phone

logger = logging.getLogger(__name__)

USER_FIELDS = ("email", "phone", "language", "timezone", "first_name", "last_name")


@dataclass
class RowResult:
    line: int
    username: str
    action: str = ""  # created, updated, unchanged, invalid
    errors: dict = field(default_factory=dict)
    user: User | None = field(default=None, repr=False)
    fields: list = field(default_factory=list)  # what changed (created or updated)
    was_active: bool = True  # before the import (True for a new user)


@dataclass
class ImportReport:
    rows: list

    def count(self, action):
        return sum(1 for row in self.rows if row.action == action)

    @property
    def invalid(self):
        return [row for row in self.rows if row.action == "invalid"]

    def summary(self):
        return {action: self.count(action) for action in ("created", "updated", "unchanged", "invalid")}


def users_upsert(rows, *, dry_run=False, batch_size=500, first_line=1):
    """Create or update users by username, with their cohort memberships.

    `rows` is an iterable of dicts: username (required), email, phone, language, timezone,
    first_name, last_name, cohorts (list of codes or a ';'-separated string), is_active,
    institutional_id. A row with an institutional id matches the user holding it first (and may
    rename them), then the user of that username if they hold no other id.
    Every row is validated as the admin would (`full_clean`); an invalid row is reported
    with its line number and field errors and nothing of it is written. With
    `dry_run`, nothing at all is written. Rerunning the same rows changes nothing.
    Each person created who will sign in with a password is sent an invitation by the
    workers, after commit (`invitations_enqueue`): no email is sent in the caller's request.
    """
    rows = list(rows)
    results, seen, seen_ids = [], {}, {}
    known_cohorts = dict(Cohort.objects.values_list("code", "pk"))
    user_group = Group.objects.get(name=Role.USER)
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        usernames = [str(row.get("username") or "").strip() for row in batch]
        ids = [str(row.get("institutional_id") or "").strip() for row in batch]
        existing = {u.username: u for u in User.objects.filter(username__in=[u for u in usernames if u])
                    .prefetch_related("cohorts")}
        by_id = {u.institutional_id: u for u in User.objects.filter(institutional_id__in=[i for i in ids if i])
                 .prefetch_related("cohorts")} if any(ids) else {}
        with transaction.atomic():
            invited = []
            for offset, (row, username, institutional_id) in enumerate(zip(batch, usernames, ids)):
                line = row.get("_line") or first_line + start + offset
                if username and username in seen:
                    # A second row for the same user would silently overwrite the first (or fail to insert).
                    results.append(RowResult(line=line, username=username, action="invalid", errors={
                        "username": [f"{username} is already on line {seen[username]}."]}))
                    continue
                if institutional_id and institutional_id in seen_ids:
                    results.append(RowResult(line=line, username=username, action="invalid", errors={
                        "institutional_id": [f"{institutional_id} is already on line {seen_ids[institutional_id]}."]}))
                    continue
                seen[username] = line
                if institutional_id:
                    seen_ids[institutional_id] = line
                user, conflict = _match_user(username, institutional_id, existing, by_id)
                if conflict:
                    results.append(RowResult(line=line, username=username, action="invalid", errors=conflict))
                    continue
                result = _upsert_one(row, username, user, known_cohorts, user_group,
                                     line=line, dry_run=dry_run)
                results.append(result)
                if result.action == "created" and not dry_run and user_needs_invitation(result.user):
                    invited.append(result.user.pk)
            invitations_enqueue(invited)
    report = ImportReport(results)
    logger.info("user import: %s%s", report.summary(), " (dry run)" if dry_run else "")
    return report


USER_COLUMNS = ("username", *USER_FIELDS, "cohorts", "is_active")


def users_read_csv(stream):
    """Read a users CSV (text stream) into rows for `users_upsert`, each with its line number in `_line`.

    Raises ValidationError when the header lacks `username` or names an unknown column.
    """

    reader = csv.DictReader(stream)
    header = [name.strip() for name in reader.fieldnames or []]
    if "username" not in header:
        raise ValidationError(f"Missing column 'username' (found: {', '.join(header) or 'nothing'}).")
    unknown = [name for name in header if name not in USER_COLUMNS]
    if unknown:
        raise ValidationError(f"Unknown column(s): {', '.join(unknown)}; the columns are {', '.join(USER_COLUMNS)}.")
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:
            row = {"username": row.get("username"), "_extra": row.pop(None)}
        if not any((value or "").strip() for key, value in row.items() if isinstance(value, str)):
            continue
        rows.append({**{k: v for k, v in row.items() if v is not None}, "_line": reader.line_num})
    return rows


def _cohort_codes(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = value.replace(",", ";").split(";")
    return sorted({str(code).strip() for code in value if str(code).strip()})


def _match_user(username, institutional_id, by_username, by_id):
    """(user or None, errors): the holder of the institutional id, else the user of that username."""
    holder = by_id.get(institutional_id) if institutional_id else None
    named = by_username.get(username)
    if holder is not None:
        if named is not None and named.pk != holder.pk:
            return None, {"username": [f"{username} is another person's username (institutional id "
                                       f"{named.institutional_id or 'none'}) than {institutional_id}'s."]}
        return holder, {}
    if named is not None and institutional_id and named.institutional_id:
        return None, {"institutional_id": [f"{username} already has the institutional id {named.institutional_id}, "
                                           f"not {institutional_id}."]}
    return named, {}


def _upsert_one(row, username, user, known_cohorts, user_group, *, line, dry_run):
    result = RowResult(line=line, username=username)
    if row.get("_extra"):
        result.action, result.errors = "invalid", {"row": [f"{len(row['_extra'])} more cell(s) than the header."]}
        return result
    if not username:
        result.action, result.errors = "invalid", {"username": ["A username is required."]}
        return result
    codes = _cohort_codes(row.get("cohorts"))
    unknown = [code for code in codes or [] if code not in known_cohorts]
    created = user is None
    if created:
        user = User(username=username)
    result.was_active = user.is_active
    changed = []
    if user.username != username:
        user.username = username
        changed.append("username")
    institutional_id = str(row.get("institutional_id") or "").strip()
    if institutional_id and user.institutional_id != institutional_id:
        user.institutional_id = institutional_id
        changed.append("institutional_id")
    for name in USER_FIELDS:
        if name in row and row[name] is not None:
            value = str(row[name]).strip()
            if not value and name in ("language", "timezone"):
                continue  # an empty cell keeps the current (or default) setting
            if name == "phone":
                try:
                    value = normalize_phone(value)
                except ValidationError:
                    pass  # full_clean reports it with the field's message
            if getattr(user, name) != value:
                setattr(user, name, value)
                changed.append(name)
    if "is_active" in row and row["is_active"] not in (None, ""):
        active = str(row["is_active"]).strip().lower() in ("1", "true", "yes", "y")
        if user.is_active != active:
            user.is_active = active
            changed.append("is_active")
    errors = {}
    try:
        # Uniqueness of the username is settled above (looked up, duplicates refused): no query per row.
        user.full_clean(exclude=["password"] if created else None, validate_unique=False)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if unknown:
        errors["cohorts"] = [f"Unknown cohort(s): {', '.join(unknown)}."]
    if errors:
        result.action, result.errors = "invalid", errors
        return result
    current = set() if created else {c.code for c in user.cohorts.all()}
    cohort_change = codes is not None and set(codes) != current
    if not (created or changed or cohort_change):
        result.action = "unchanged"
        return result
    result.action = "created" if created else "updated"
    result.fields = changed + (["cohorts"] if cohort_change else [])
    if dry_run:
        return result
    if created:
        user.set_unusable_password()
    user.save()
    result.user = user
    if created:
        user.groups.add(user_group)
    if cohort_change:
        user.cohorts.set([known_cohorts[code] for code in codes])
    return result


# --- API keys -----------------------------------------------------------------------------

def api_key_create(*, user, name, scopes, cohorts=(), expires_at=None):
    """Create an API key for `user`. Returns (api_key, raw_key); the raw key is never stored.

    Raises ValidationError for an unknown scope.
    """
    scopes = sorted(set(scopes))
    unknown = set(scopes) - set(ApiKey.Scope.values)
    if unknown:
        raise ValidationError({"scopes": [f"Unknown scope(s): {', '.join(sorted(unknown))}; "
                                          f"choose from {', '.join(ApiKey.Scope.values)}."]})
    prefix, raw = ApiKey.generate()
    with transaction.atomic():
        key = ApiKey.objects.create(user=user, name=name, prefix=prefix, hashed_key=ApiKey.hash(raw),
                                    scopes=scopes, expires_at=expires_at)
        if cohorts:
            key.cohorts.set(cohorts)
    logger.info("API key %s created for user %s", key.prefix, user.pk,
                extra={"api_key_prefix": key.prefix, "user_id": user.pk})
    return key, raw


def api_key_reach(api_key):
    """The cohort codes a request made with `api_key` may reach now, or None for no limit at all.

    A key reaches what its owner may reach at the time of use (an Admin: everyone; anyone else:
    the cohorts they manage), narrowed to the key's own cohorts when it names some. It is worked
    out at each use, so an owner who stops managing a cohort, or stops being an Admin, takes it
    away from their keys at once. None only for an Admin's key that names no cohort.
    """
    owner = api_key.user
    key_cohorts = set(api_key.cohorts.values_list("code", flat=True))
    if is_admin(owner):
        return key_cohorts or None
    managed = set(owner.managed_cohorts.values_list("code", flat=True))
    return key_cohorts & managed if key_cohorts else managed


def api_key_revoke(key):
    """Revoke a key at once (idempotent)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
        logger.info("API key %s revoked", key.prefix, extra={"api_key_prefix": key.prefix})
    return key


# --- sessions and tokens ------------------------------------------------------------------

def user_sign_out_everywhere(*, user):
    """End every session and every API access and refresh token of `user` issued until now.

    Raises the user's `auth_version`, which each JWT carries (claim `ver`) and each session's
    auth hash includes; anything issued at an older version is refused from then on. A new
    password and a deactivation raise it too (User.save). API keys are not tokens: revoke them
    with `api_key_revoke`.
    """
    User.objects.filter(pk=user.pk).update(auth_version=F("auth_version") + 1)
    user.refresh_from_db(fields=["auth_version"])
    logger.info("user %s signed out everywhere", user.pk, extra={"user_id": user.pk})
    return user
