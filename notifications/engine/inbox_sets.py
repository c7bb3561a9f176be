"""The inbox part of a fan-out page written as sets: two INSERT … SELECT, no row built in Python.

The inbox is a table of this database: once the page's transaction commits, nothing can fail for an
inbox delivery. So the inbox deliveries of a page's *plain* recipients (no quiet hours can hold them:
`DeliveryPlanner.plain`) are planned and written by one INSERT … SELECT from the audience query and
the preferences — `sent`, or `skipped` with the planner's reason (opted out, category default off) —
and their InboxMessages by a second one, in the transaction that plans the page. A page planned twice
is a no-op (FanoutPage.planned_at, and both tables' unique constraints); a rolled-back page writes nothing.

Only when every plain recipient of a language and time zone gets the same inbox content
(`Notifier.shared_content`, checked against one real recipient of each group, as `SharedParts` does);
a personalised notification (a batch), a resend of a family (see `inbox_store`) or another
INBOX_STORE takes the usual way, as do held recipients.
"""

import logging
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, F, Min, OuterRef
from django.db.models.constants import OnConflict

from channels_app.base import Message, Recipient
from channels_app.constants import Channel
from channels_app.decorators import record_metric

from ..links import link_url
from ..models import Delivery, InboxMessage, Preference, RecipientContext
from .audience import page_users
from .inbox import inbox_unread_changed, inbox_unread_changed_for_all
from .planning import RECIPIENT_FIELDS, planned_channels

logger = logging.getLogger(__name__)
Status = Delivery.Status
STORE = "notifications.engine.inbox.inbox_store"


def inbox_set_allowed(notification, channels):
    """Whether the inbox of a notification planned on `channels` may be written as sets (the module's doc)."""
    return (Channel.INBOX in channels and settings.INBOX_STORE == STORE and not notification.family_root_id
            and not RecipientContext.objects.filter(notification=notification).exists())


def fanout_page_size(notification, notifier):
    """Recipients per fan-out page: FANOUT_INBOX_PAGE_SIZE for an inbox-only notification written as sets (its pages
    cost their fixed queries and commit, not a row built per recipient), else FANOUT_CHUNK_SIZE."""
    channels = planned_channels(notification, notifier)
    if channels == [Channel.INBOX] and inbox_set_allowed(notification, channels):
        return max(settings.FANOUT_CHUNK_SIZE, settings.FANOUT_INBOX_PAGE_SIZE)
    return settings.FANOUT_CHUNK_SIZE


def inbox_set_for(planner, page):
    """The InboxSet of a FanoutPage, or None: its inbox goes the usual way. Sets `planner.inbox_by_set`, so the
    planner leaves those deliveries out."""
    notification = planner.notification
    if not inbox_set_allowed(notification, planner.channels):
        return None
    plain = page_users(page).filter(planner.plain_q())
    groups = _groups(plain)
    if not groups:
        return None
    users = get_user_model().objects.only(*RECIPIENT_FIELDS).in_bulk(groups.values())
    present = {"name", "username", "user_id"} | ({"ack_url"} if notification.requires_ack else set())
    contents = {}
    for (language, zone), sample in groups.items():
        try:
            content = planner.notifier.shared_content(notification, Channel.INBOX, language=language, timezone=zone,
                                                      present=present)
            if content is None or content != planner.notifier.render(_message(notification, users[sample])):
                return None
        except Exception:  # a template that breaks: each message fails with its reason, the usual way
            logger.debug("notification %s: the inbox of a page is written message by message", notification.pk,
                         extra={"notification_id": notification.pk}, exc_info=True)
            return None
        contents[(language, zone)] = (content["title"][:200], content["body"])
    planner.inbox_by_set = True
    return InboxSet(planner, page, plain, contents)


def _groups(plain):
    """{(language, time zone): the id of one recipient} of the plain recipients of a page."""
    return {(language, zone): sample for language, zone, sample in
            plain.order_by().values_list("language", "timezone").annotate(sample=Min("pk"))}


def _message(notification, user):
    ack_url = (link_url("acknowledge", user_id=user.pk, notification_id=notification.pk)
               if notification.requires_ack else "")
    return Message(delivery_id=None, channel=Channel.INBOX, recipient=Recipient.from_user(user, channel=Channel.INBOX),
                   notification=notification, ack_url=ack_url)


class InboxSet:
    """The inbox deliveries and messages of a page's plain recipients, written by `write(now)`."""

    def __init__(self, planner, page, plain, contents):
        self.planner, self.page, self.plain, self.contents = planner, page, plain, contents
        self.notification = planner.notification
        self.missing = []  # deliveries handed back to the usual way (see `write`)

    def write(self, now):
        """Write them (inside the page's transaction); returns how many were sent (the others are skipped)."""
        started = time.perf_counter()
        statuses = self._deliveries(now)
        written = self._messages(now)
        made = len(statuses) if isinstance(statuses, list) else statuses
        if written is None or not isinstance(statuses, list) or statuses.count(Status.SENT) != len(written):
            # A recipient whose language or time zone changed since the groups were read has no message: their
            # delivery goes back to the queue, to be sent the usual way.
            self.missing = list(self._sent(now).exclude(Exists(InboxMessage.objects.filter(
                notification=self.notification, recipient=OuterRef("recipient_id")))).values_list("pk", flat=True))
        if self.missing:
            Delivery.objects.filter(pk__in=self.missing).update(status=Status.QUEUED, attempts=0, send_count=0,
                                                                sent_at=None, claimed_at=None, enqueued_at=now)
        sent = len(written) if written is not None else self._sent(now).count()
        if written is None:
            inbox_unread_changed_for_all()
        else:
            inbox_unread_changed(written)
        seconds = time.perf_counter() - started
        if sent:
            record_metric(self.planner.notifier.key, Channel.INBOX, items=sent, seconds=seconds)
        logger.info("notification %s: %d inbox deliveries written as a set, %d of them sent", self.notification.pk,
                    made, sent, extra={"notification_id": self.notification.pk, "channel": Channel.INBOX})
        return sent

    def _sent(self, now):
        return Delivery.objects.filter(notification=self.notification, channel=Channel.INBOX, escalation_level=0,
                                       status=Status.SENT, sent_at=now, recipient_id__gt=self.page.after_pk,
                                       recipient_id__lte=self.page.last_pk)

    def _deliveries(self, now):
        """One INSERT … SELECT: the plain recipients' inbox deliveries, sent or skipped with the reason. Returns
        the status of each row written (their number where the database cannot return them)."""
        planner, q = self.planner, connection.ops.quote_name
        if planner.mandatory or self.notification.requires_ack:
            why, why_params = "%s", [""]
        else:
            why = (f"CASE WHEN p.{q(Preference._meta.pk.column)} IS NULL THEN %s "
                   f"WHEN p.{q(Preference._meta.get_field('enabled').column)} THEN %s ELSE %s END")
            why_params = ["" if planner.defaults[Channel.INBOX][0] else Delivery.Reason.DEFAULT_OFF, "",
                          Delivery.Reason.OPTED_OUT]
        # The page's plain recipients are the source itself (each once), not a filter on a scan of every user.
        users_sql, users_params = _sql(self.plain.annotate(uid=F("pk")).values("uid"))
        preference = Preference._meta
        source = (f"SELECT u.uid AS uid, {why} AS why FROM ({users_sql}) u "
                  f"LEFT JOIN {q(preference.db_table)} p ON p.{q(preference.get_field('user').column)} = u.uid "
                  f"AND p.{q(preference.get_field('category').column)} = %s "
                  f"AND p.{q(preference.get_field('channel').column)} = %s")
        source_params = [*why_params, *users_params, self.notification.category, Channel.INBOX]
        fields = {name: Delivery._meta.get_field(name) for name in ("status", "sent_at", "attempts")}
        sent = "s.why = ''"

        def when_sent(field, value, otherwise):
            then, then_params = _value(fields[field], value)
            other, other_params = _value(fields[field], otherwise)
            return f"CASE WHEN {sent} THEN {then} ELSE {other} END", then_params + other_params

        given = {
            "notification": _value(Delivery._meta.get_field("notification"), self.notification.pk),
            "recipient": ("s.uid", []),
            "channel": _value(Delivery._meta.get_field("channel"), Channel.INBOX),
            "status": when_sent("status", Status.SENT, Status.SKIPPED),
            "reason": ("s.why", []),
            "attempts": when_sent("attempts", 1, 0),
            "send_count": when_sent("attempts", 1, 0),
            "sent_at": when_sent("sent_at", now, None),
            "claimed_at": when_sent("sent_at", now, None),
            "enqueued_at": when_sent("sent_at", now, None),
            "next_attempt_at": _value(fields["sent_at"], now),
        }
        returning = "status" if connection.features.can_return_rows_from_bulk_insert else None
        return _insert(Delivery, given, now, f"FROM ({source}) s", source_params, returning=returning)

    def _messages(self, now):
        """One INSERT … SELECT: an InboxMessage for each inbox delivery just written `sent`; returns their
        recipients' ids (None where the database cannot return them)."""
        q = connection.ops.quote_name
        rows, content_params = [], []
        for (language, zone), (title, body) in self.contents.items():
            rows.append("SELECT %s AS lang, %s AS tz, %s AS title, %s AS body")
            content_params += [language, zone, title, body]
        sent = self._sent(now).annotate(rid=F("recipient_id"), lang=F("recipient__language"),
                                        tz=F("recipient__timezone"))
        sent_sql, sent_params = _sql(sent.values("rid", "lang", "tz"))
        source = (f"FROM ({sent_sql}) d JOIN ({' UNION ALL '.join(rows)}) c ON c.lang = d.lang AND c.tz = d.tz")
        field = InboxMessage._meta.get_field
        given = {
            "notification": _value(field("notification"), self.notification.pk),
            "recipient": ("d.rid", []),
            "title": _text(field("title"), "c.title"),
            "body": _text(field("body"), "c.body"),
            "category": _value(field("category"), self.notification.category),
        }
        returning = connection.features.can_return_rows_from_bulk_insert
        recipients = _insert(InboxMessage, given, now, source, [*sent_params, *content_params],
                             returning=field("recipient").column if returning else None)
        return recipients if returning else None


def _sql(queryset):
    return queryset.query.get_compiler(using=queryset.db).as_sql()


def _value(field, value):
    """A parameter for `field`, typed on PostgreSQL (a bare literal in a SELECT list would be text)."""
    prepared = field.get_db_prep_save(value, connection)
    if connection.vendor == "postgresql":
        return f"CAST(%s AS {field.db_type(connection)})", [prepared]
    return "%s", [prepared]


def _text(field, column):
    if connection.vendor == "postgresql":
        return f"CAST({column} AS {field.db_type(connection)})", []
    return column, []


def _insert(model, given, now, source, source_params, returning=None):
    """INSERT INTO the model's table, every concrete column but the id, SELECT `given` ({field name: (sql, params)};
    dates set on creation take `now`, every other field its default) `source` (FROM … WHERE …), ignoring rows that
    are there already. Returns the number of rows written, or the `returning` column of each."""
    q = connection.ops.quote_name
    columns, values, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.name in given:
            sql, field_params = given[field.name]
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            sql, field_params = _value(field, now)
        else:
            sql, field_params = _value(field, field.get_default())
        columns.append(q(field.column))
        values.append(sql)
        params += field_params
    statement = connection.ops.insert_statement(on_conflict=OnConflict.IGNORE)
    suffix = connection.ops.on_conflict_suffix_sql(None, OnConflict.IGNORE, None, None)
    sql = f"{statement} {q(model._meta.db_table)} ({', '.join(columns)}) SELECT {', '.join(values)} {source} {suffix}"
    if returning:
        sql += f" RETURNING {q(returning)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *source_params])
        return [row[0] for row in cursor.fetchall()] if returning else cursor.rowcount
