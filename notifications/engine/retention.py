"""Retention: finished deliveries and inbox messages older than their settings are deleted, batch by batch;
entries of the compliance ledger older than LEDGER_RETENTION_YEARS (at least 7) too, and nothing else ever
deletes them (purging deliveries or notifications does not touch the ledger: it holds no foreign key).

The retention schedule (notifications.engine.queue) runs `retention_purge` once a day; the
`purge_deliveries` command is the by-hand door to the same functions. Each batch is its own
short transaction, so a purge can run beside the workers and be stopped and rerun at any time.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from ..ledger_db import LEDGER_MIN_YEARS
from ..models import Delivery, InboxMessage, LedgerEntry
from .inbox import inbox_unread_changed_for_all

logger = logging.getLogger(__name__)

RETENTION_SETTINGS = ("RETENTION_DELIVERY_DAYS", "RETENTION_INBOX_DAYS")


def retention_days(name):
    """The days `settings.<name>` keeps rows for (0: forever).

    Raises ImproperlyConfigured when it is not a whole number of days of at least 0
    (the system check flashnotify.E013 reports the same with a hint).
    """
    value = getattr(settings, name)
    try:
        days = int(str(value).strip())
    except ValueError:
        days = -1
    if days < 0:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number of days (0 keeps forever).")
    return days


def ledger_retention_years():
    """The years the compliance ledger keeps its entries (LEDGER_RETENTION_YEARS).

    Raises ImproperlyConfigured below the legal minimum of 7 years (the system check flashnotify.E060
    reports the same with a hint): the retention purge then deletes nothing at all.
    """
    value = settings.LEDGER_RETENTION_YEARS
    try:
        years = int(str(value).strip())
    except ValueError:
        years = -1
    if years < LEDGER_MIN_YEARS:
        raise ImproperlyConfigured(f"LEDGER_RETENTION_YEARS={value!r} is not a whole number of years of at least "
                                   f"{LEDGER_MIN_YEARS}: the compliance ledger is kept at least {LEDGER_MIN_YEARS} "
                                   "years.")
    return years


def years_before(moment, years):
    """`moment` the same day and time `years` calendar years earlier (29 February gives 28 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def _purge(queryset, *, batch_size, progress=None):
    deleted = 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            count, _ = queryset.model.objects.filter(pk__in=ids).delete()
        deleted += count
        if progress:
            progress(deleted)


def deliveries_purge(*, older_than, batch_size=2000, now=None, progress=None):
    """Delete finished deliveries created more than `older_than` (a timedelta) ago, batch by batch.

    Each batch is its own short transaction; pending deliveries are never touched. Returns the count.
    """
    cutoff = (now or timezone.now()) - older_than
    old = Delivery.objects.filter(created_at__lt=cutoff).exclude(status__in=Delivery.PENDING_STATUSES)
    deleted = _purge(old, batch_size=batch_size, progress=progress)
    logger.info("purged %d deliveries created before %s", deleted, cutoff.isoformat())
    return deleted


def inbox_messages_purge(*, older_than, batch_size=2000, now=None, progress=None):
    """Delete inbox messages created more than `older_than` ago, batch by batch. Returns the count."""
    cutoff = (now or timezone.now()) - older_than
    deleted = _purge(InboxMessage.objects.filter(created_at__lt=cutoff), batch_size=batch_size, progress=progress)
    if deleted:
        inbox_unread_changed_for_all()
    logger.info("purged %d inbox messages created before %s", deleted, cutoff.isoformat())
    return deleted


def ledger_entries_purge(*, years, now=None, batch_size=2000):
    """Delete compliance ledger entries recorded more than `years` (at least 7) calendar years ago, batch by batch.

    The one way entries leave the ledger (LedgerEntry.objects.expired_delete); the database refuses to delete
    younger ones whatever asks. Returns the count.
    """
    if years < LEDGER_MIN_YEARS:
        raise ImproperlyConfigured(f"The compliance ledger is kept at least {LEDGER_MIN_YEARS} years, not {years}.")
    # Never later than the database's own clock allows (its triggers compare with the real time).
    cutoff = years_before(min(now or timezone.now(), timezone.now()), years)
    deleted = 0
    while True:
        ids = list(LedgerEntry.objects.filter(at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            count, _ = LedgerEntry.objects.filter(pk__in=ids).expired_delete(cutoff)
        deleted += count
    logger.info("purged %d compliance ledger entries recorded before %s", deleted, cutoff.isoformat())
    return deleted


def retention_purge(*, now=None, batch_size=2000):
    """Apply RETENTION_DELIVERY_DAYS and RETENTION_INBOX_DAYS (0: keep forever) and LEDGER_RETENTION_YEARS:
    what the daily schedule runs.

    Returns {"deliveries": n, "inbox_messages": n, "ledger_entries": n} for what it deleted. When a setting
    is not a number (or the ledger's is below 7 years), nothing at all is deleted and ImproperlyConfigured
    is raised.
    """
    days = {name: retention_days(name) for name in RETENTION_SETTINGS}  # all checked before anything is deleted
    years = ledger_retention_years()
    now = now or timezone.now()
    done = {"deliveries": 0, "inbox_messages": 0, "ledger_entries": 0}
    if days["RETENTION_DELIVERY_DAYS"]:
        done["deliveries"] = deliveries_purge(older_than=timedelta(days=days["RETENTION_DELIVERY_DAYS"]),
                                              now=now, batch_size=batch_size)
    if days["RETENTION_INBOX_DAYS"]:
        done["inbox_messages"] = inbox_messages_purge(older_than=timedelta(days=days["RETENTION_INBOX_DAYS"]),
                                                      now=now, batch_size=batch_size)
    done["ledger_entries"] = ledger_entries_purge(years=years, now=now, batch_size=batch_size)
    # No person acts here, and the admin history needs one: the application log (and the task's result
    # that django-q2 keeps) records each run instead.
    logger.info("retention purge: %d deliveries older than %s days, %d inbox messages older than %s days, "
                "%d ledger entries older than %d years",
                done["deliveries"], days["RETENTION_DELIVERY_DAYS"] or "∞",
                done["inbox_messages"], days["RETENTION_INBOX_DAYS"] or "∞", done["ledger_entries"], years,
                extra={"retention": {**days, "LEDGER_RETENTION_YEARS": years}, "purged": done})
    return done
