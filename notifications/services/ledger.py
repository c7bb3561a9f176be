"""The compliance ledger of emergency alerts, read and exported: an alert's thread or a date range, as CSV or
JSON, with whether the hash chain holds. Entries are written by `LedgerEntry.record` (services and engine);
nothing here changes them.

Every door (the console, the API) calls these, so what an export holds is the same whichever door asks.
"""

import json
import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db.models import Max, Min, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from flashnotify.csv_export import csv_writer

from ..models import LedgerEntry, Notification

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "flashnotify-ledger/1"
EXPORT_FORMATS = ("json", "csv")
DEFAULT_RANGE = timedelta(days=30)
CSV_COLUMNS = ("id", "at", "notification", "incident", "event", "event_label", "actor", "actor_id", "details",
               "previous_digest", "digest")


def ledger_alert_entries(notification_id):
    """The entries of an alert's thread (its incident's notifications: the alert, its updates, its all-clear) in
    chain order, or None when the ledger holds nothing of `notification_id`.

    The notification itself may be gone: the ledger outlives it, and names its incident.
    """
    first = LedgerEntry.objects.filter(notification_id=notification_id).order_by("id").first()
    if first is None:
        return None
    incident_id = (Notification.objects.filter(pk=notification_id).values_list("incident_id", flat=True).first()
                   or first.incident_id)
    thread = Q(notification_id=notification_id)
    if incident_id:
        thread |= Q(incident_id=incident_id)
    return LedgerEntry.objects.filter(thread).order_by("id")


def ledger_range_clean(since=None, until=None):
    """(since, until) for a date-range export: until defaults to now, since to 30 days before until.

    Raises ValidationError by field when `since` is not before `until`."""
    until = until or timezone.now()
    since = since or until - DEFAULT_RANGE
    if since >= until:
        raise ValidationError({"since": [_("The start of the period must be before its end.")]})
    return since, until


def ledger_between(since, until):
    """Entries recorded from `since` (included) to `until` (excluded), in chain order."""
    return LedgerEntry.objects.filter(at__gte=since, at__lt=until).order_by("id")


def ledger_chain_state(entries=None):
    """Whether the hash chain holds: {"intact": bool, "broken_at": entry id or None, "checked": n}.

    With `entries` (a queryset), the stretch of the chain they lie in is checked, from the entry before the
    first of them to the entry after the last, every alert's entries between included: an edited entry breaks
    its own digest, a deleted one the link of the next. Without, the whole ledger.
    """
    chain = LedgerEntry.objects.order_by("id")
    if entries is not None:
        bounds = entries.aggregate(first=Min("id"), last=Max("id"))
        if bounds["first"] is None:
            return {"intact": True, "broken_at": None, "checked": 0}
        low = chain.filter(id__lt=bounds["first"]).order_by("-id").values_list("id", flat=True).first()
        high = chain.filter(id__gt=bounds["last"]).values_list("id", flat=True).first()
        chain = chain.filter(id__gte=low or bounds["first"], id__lte=high or bounds["last"])
    checked = 0

    def counted(rows):
        nonlocal checked
        for row in rows:
            checked += 1
            yield row

    broken = LedgerEntry.verify_chain(counted(chain.iterator(chunk_size=2000)))
    if broken is not None:
        logger.error("compliance ledger chain broken at entry %s", broken.pk,
                     extra={"ledger_entry_id": broken.pk, "notification_id": broken.notification_id})
    return {"intact": broken is None, "broken_at": broken.pk if broken else None, "checked": checked}


def ledger_chain_sentence(state):
    """ "intact" or "broken at entry N", in the reader's language."""
    if state["intact"]:
        return _("intact")
    return _("broken at entry %(id)s") % {"id": state["broken_at"]}


def entry_dict(entry):
    """One entry as JSON-ready data: everything its digest covers, and the digests, so a reader can check them."""
    return {"id": entry.pk, "at": entry.at.isoformat(), "notification": entry.notification_id,
            "incident": entry.incident_id, "event": entry.event, "event_label": str(entry.get_event_display()),
            "actor": entry.actor, "actor_id": entry.actor_id, "data": entry.data,
            "previous_digest": entry.previous_digest, "digest": entry.digest}


def _csv_chunks(entries):
    class Echo:
        def write(self, value):
            return value

    writer = csv_writer(Echo())
    yield "\ufeff" + writer.writerow(CSV_COLUMNS)  # the byte order mark: spreadsheets then read UTF-8
    for entry in entries.iterator(chunk_size=2000):
        row = entry_dict(entry)
        row["details"] = json.dumps(row.pop("data"), ensure_ascii=False, sort_keys=True)
        yield writer.writerow([row[column] for column in CSV_COLUMNS])


def _json_chunks(entries, *, scope, chain):
    head = json.dumps({"format": EXPORT_FORMAT, "exported_at": timezone.now().isoformat(), "scope": scope,
                       "chain": chain}, ensure_ascii=False)
    yield head[:-1] + ', "entries": ['
    for index, entry in enumerate(entries.iterator(chunk_size=2000)):
        yield ("," if index else "") + json.dumps(entry_dict(entry), ensure_ascii=False)
    yield "]}\n"


def ledger_export(entries, *, fmt, scope, by):
    """`entries` as (file name, content type, iterator of text chunks): CSV (every cell formula-safe) or JSON
    (with the scope and the chain's state). `scope` names what was asked ({"notification": id, "incident": id}
    or {"since": iso, "until": iso}); `by` is who asked (logged)."""
    if fmt not in EXPORT_FORMATS:
        raise ValidationError({"format": [_("Choose json or csv.")]})
    if "notification" in scope:
        name = f"ledger-alert-{scope['notification']}"
    else:
        name = f"ledger-{scope['since'][:10]}-{scope['until'][:10]}"
    logger.info("compliance ledger exported as %s (%s) by user %s", fmt, name, getattr(by, "pk", None),
                extra={"notification_id": scope.get("notification"), "by_user_id": getattr(by, "pk", None)})
    if fmt == "csv":
        return f"{name}.csv", "text/csv; charset=utf-8", _csv_chunks(entries)
    return f"{name}.json", "application/json", _json_chunks(entries, scope=scope, chain=ledger_chain_state(entries))


def alert_scope(notification_id, entries):
    incident = entries.exclude(incident_id=None).values_list("incident_id", flat=True).first()
    return {"notification": int(notification_id), "incident": incident}


def range_scope(since, until):
    return {"since": since.isoformat(), "until": until.isoformat()}
