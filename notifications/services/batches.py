"""Personalised batches: one CSV row per recipient, each with its own template context.

A batch is sent as one notification per part (`chunk_size` rows), each through
`notification_send` with an idempotency key derived from the batch key and the part number,
its per-recipient contexts written in the same transaction. Rerunning an interrupted batch
with the same key replays the parts already accepted (nothing is sent twice), queues again the
fan-out of every accepted part that never finished it (still `queued`, or `sending` and not fanned
out: its task may have been lost with the interruption) and sends the parts that are missing.
The fan-out and delivery of each part are the engine's, unchanged.
"""

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template import Context, TemplateSyntaxError
from django.template.base import Lexer, TokenType

from channels_app.base import BATCH_TAGS, REFUSED_TAGS, batch_template_engine

from ..engine.queue import enqueue_fan_out
from ..models import Notification, RecipientContext
from .sending import notification_send, text_problem

logger = logging.getLogger(__name__)
User = get_user_model()

IDENTITY_COLUMN = "username"
RESERVED_COLUMNS = {"recipient", "notification", "data", "title", "body", "deadline", "ack_url", "unsubscribe_url",
                    "notifier"}


@dataclass
class BatchRow:
    line: int
    username: str
    context: dict
    user_id: int | None = None


@dataclass
class BatchFile:
    rows: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # (line, reason)
    digest: str = ""

    @property
    def valid(self):
        return not self.problems


def batch_read(stream):
    """Parse and check a batch CSV (a text stream). Raises ValidationError when the file itself is unusable.

    Every row is checked (missing username, unknown or inactive user, duplicate, extra cells);
    problems are returned with their line numbers, nothing is written.
    """
    text = stream.read()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"The file is not UTF-8 text: {exc}.") from exc
    text = text.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise ValidationError("The file is empty: it needs a header line with a 'username' column.")
    if IDENTITY_COLUMN not in header:
        raise ValidationError(f"Missing column 'username' (found: {', '.join(header)}).")
    if len(set(header)) != len(header):
        raise ValidationError("The header names a column twice.")
    reserved = sorted(RESERVED_COLUMNS & set(header))
    if reserved:
        raise ValidationError(f"Column name(s) reserved for the templates: {', '.join(reserved)}.")
    reader.fieldnames = header
    batch = BatchFile(digest=hashlib.sha256(text.encode()).hexdigest())
    seen = {}
    for raw in reader:
        line = reader.line_num
        if None in raw:
            batch.problems.append((line, f"{len(raw[None])} more cell(s) than the header has columns"))
            continue
        if not any((value or "").strip() for value in raw.values()):
            continue  # a blank line
        username = (raw.pop(IDENTITY_COLUMN) or "").strip()
        if not username:
            batch.problems.append((line, "no username"))
            continue
        if username in seen:
            batch.problems.append((line, f"{username} is already on line {seen[username]}"))
            continue
        seen[username] = line
        batch.rows.append(BatchRow(line, username, {key: (value or "").strip() for key, value in raw.items()}))
    known = {}
    usernames = [row.username for row in batch.rows]
    for start in range(0, len(usernames), 2000):
        known.update(User.objects.filter(username__in=usernames[start:start + 2000], is_active=True)
                     .values_list("username", "pk"))
    resolved = []
    for row in batch.rows:
        row.user_id = known.get(row.username)
        if row.user_id is None:
            batch.problems.append((row.line, f"unknown or inactive user {row.username!r}"))
        else:
            resolved.append(row)
    batch.rows = resolved
    batch.problems.sort()
    return batch


def _template_problem(source):
    for token in Lexer(source).tokenize():
        name = token.contents.split()[0] if token.token_type == TokenType.BLOCK and token.contents.split() else ""
        if name in REFUSED_TAGS:
            return (f"{{% {name} %}} is not allowed in a batch template; it may use the row's columns with "
                    f"the default filters and these tags only: {', '.join(BATCH_TAGS)}.")
    try:
        template = batch_template_engine().from_string(source)
        # A trial render over an empty row: what fails here would fail for every recipient, in a worker.
        template.render(Context({}, autoescape=False))
    except TemplateSyntaxError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001  the message goes back to whoever wrote the template
        return f"{type(exc).__name__}: {exc}"
    return None


def batch_templates_check(title, body, translations=None):
    """Raise ValidationError naming the title or body (or a translation's: `title_fr`) that is not a
    valid batch template.

    Batch templates are rendered per recipient by the workers: they are held to
    `batch_template_engine` (the default filters and BATCH_TAGS, nothing loaded, nothing read).
    """
    errors = {}
    sources = [("title", title), ("body", body)]
    for language, version in (translations or {}).items():
        sources += [(f"title_{language}", version.get("title")), (f"body_{language}", version.get("body"))]
    for name, source in sources:
        problem = _template_problem(source or "")
        if problem:
            errors[name] = [f"Template error: {problem}"]
    if errors:
        raise ValidationError(errors)


def batch_titles_check(batch, title, data=None, translations=None):
    """Move to `batch.problems` the rows whose rendered title (or translated title) could not be sent
    (a control character such as a line break coming from a cell), as notification_validate refuses
    such a title."""
    for language, version in (translations or {}).items():
        batch = _titles_check(batch, version.get("title") or "", data, f"title ({language})")
    return _titles_check(batch, title, data, "title")


def _titles_check(batch, title, data, name):
    if "{" not in (title or "") or text_problem(title, title=True):
        return batch  # a plain title, or a template already refused as such: notification_validate says it once
    try:
        template = batch_template_engine().from_string(title)
    except TemplateSyntaxError:
        return batch  # refused as a template by batch_templates_check, once
    kept = []
    for row in batch.rows:
        rendered = template.render(Context({**(data or {}), **row.context}, autoescape=False)).strip()
        problem = text_problem(rendered, title=True)
        if problem:
            batch.problems.append((row.line, f"{name}: {problem}"))
        else:
            kept.append(row)
    batch.rows = kept
    batch.problems.sort()
    return batch


def batch_key(batch, options):
    """A default idempotency key: the same file sent with the same options is the same batch."""
    fingerprint = json.dumps({key: options[key] for key in sorted(options)}, sort_keys=True, default=str)
    return "batch:" + hashlib.sha256((batch.digest + fingerprint).encode()).hexdigest()[:40]


def _fan_out_unfinished(notification):
    """A part whose fan-out never started (queued, not scheduled for later) or started and never finished."""
    if notification.fanned_out_at:
        return False
    if notification.status == Notification.Status.QUEUED:
        return notification.started_at is None
    return notification.status == Notification.Status.SENDING


def batch_send(*, rows, key, sender=None, notifier, title, body, category=None, priority="normal", channels=None,
               data=None, translations=None, chunk_size=5000, progress=None, alert_status=None):
    """Send `rows` (BatchRow list) as personalised notifications, one per part of `chunk_size` rows.

    Returns a list of (notification, created). Raises what `notification_send` raises
    (ValidationError, PermissionDenied, IdempotencyConflict) for the first part it refuses;
    parts already accepted stay accepted.
    """
    results, done = [], 0
    parts = max(1, -(-len(rows) // chunk_size))
    for index in range(parts):
        part = rows[index * chunk_size:(index + 1) * chunk_size]
        with transaction.atomic():
            notification, created = notification_send(
                sender=sender, notifier=notifier, title=title, body=body, category=category, priority=priority,
                channels=channels, data=data, translations=translations, alert_status=alert_status,
                audience={"users": [row.username for row in part]},
                idempotency_key=f"{key}:{index + 1}/{parts}",
            )
            if created:
                RecipientContext.objects.bulk_create(
                    [RecipientContext(notification=notification, recipient_id=row.user_id, context=row.context)
                     for row in part], batch_size=2000,
                )
            elif _fan_out_unfinished(notification):
                # Accepted before the interruption, but its fan-out task may have been lost with it
                # (never queued, or queued and never taken): hand it to the workers again. A fan-out
                # that runs twice is a no-op the second time.
                transaction.on_commit(lambda pk=notification.pk: enqueue_fan_out(pk))
        results.append((notification, created))
        done += len(part)
        logger.info("batch %s part %d/%d: notification %s %s", key, index + 1, parts, notification.pk,
                    "accepted" if created else "already accepted", extra={"notification_id": notification.pk})
        if progress:
            progress(done, len(rows))
    return results
