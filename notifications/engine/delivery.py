"""Delivering: claim due deliveries, hand them to their notifier, record every outcome as it goes.

A delivery is claimed (`sending`, with a claim token and a lease) before it is sent, and
its outcome is recorded on it: sent, failed with the reason, or retrying at a backoff (and
handed to the queue for its due time). Outcomes are written while the chunk is being sent —
every DELIVERY_RECORD_EVERY messages or DELIVERY_RECORD_SECONDS, whichever comes first — so
a worker that dies loses at most that window; at each write the task looks whether the
notification was cancelled and whether its time budget (DELIVERY_TASK_SECONDS) is spent, and
stops taking messages if so. Nothing it claimed is left `sending` when it ends.

A chunk's channels are sent at the same time (DELIVERY_PARALLEL_CHANNELS): each channel's part of it
by a thread of its own, with its own recorder, so the window above is per channel.
"""

import functools
import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.db.models import Case, Count, F, Value, When
from django.utils import timezone

from channels_app.base import Message, Recipient, StopSending
from channels_app.constants import Channel
from channels_app.decorators import flush_metrics
from channels_app.models import PushSubscription
from channels_app.registry import get_notifier

from ..links import link_url
from ..models import Delivery, InboxMessage, LedgerEntry, Notification, RecipientContext
from .metrics import observe_fanout_lag
from .queue import enqueue_deliveries, enqueue_deliveries_at

logger = logging.getLogger(__name__)
Status = Delivery.Status
# Channels whose sending, repeated after a lost outcome, writes nothing twice (the inbox keeps one message
# per notification and recipient): their outcomes, which come in one burst, are not counted towards
# DELIVERY_RECORD_EVERY, so a chunk's are written together rather than in a write every few messages.
IDEMPOTENT_CHANNELS = frozenset({Channel.INBOX})


def log_notification(notification, status):
    logger.info("notification %s %s", notification.pk, status,
                extra={"notification_id": notification.pk, "status": status})


def _backoff(attempts, retry_after=None):
    if retry_after:
        return timedelta(seconds=float(retry_after))
    base = settings.DELIVERY_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    capped = min(base, settings.DELIVERY_RETRY_MAX_SECONDS)
    return timedelta(seconds=capped * random.uniform(0.5, 1.0))  # "equal jitter"


def action_url(name, delivery):
    return link_url(name, user_id=delivery.recipient_id, notification_id=delivery.notification_id)


def message_for(delivery, push_subscriptions, contexts=None):
    recipient = Recipient.from_user(delivery.recipient, push_subscriptions.get(delivery.recipient_id, ()),
                                    channel=delivery.channel)
    notification = delivery.notification
    return Message(
        delivery_id=delivery.pk, channel=delivery.channel, recipient=recipient, notification=notification,
        message_id=delivery.message_id, attempt=delivery.attempts,
        unsubscribe_url=action_url("unsubscribe", delivery) if delivery.channel == Channel.EMAIL else "",
        ack_url=action_url("acknowledge", delivery) if notification.requires_ack else "",
        context=(contexts or {}).get((delivery.notification_id, delivery.recipient_id)),
    )


def deliveries_send(delivery_ids, *, now=None):
    """Claim the given deliveries that are due, send them, and record every outcome as it goes."""
    fixed_clock = now is not None
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = Delivery.objects.filter(
        pk__in=delivery_ids, status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now, digest=False,
    ).update(status=Status.SENDING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return {}
    return claimed_deliveries_send(token, now=now, fixed_clock=fixed_clock)


def claimed_deliveries_send(token, *, now, fixed_clock=True):
    """Send the deliveries claimed under `token` (status `sending`, attempts counted) and record every outcome."""
    deliveries = list(Delivery.objects.filter(claim_token=token, status=Status.SENDING).select_related("recipient"))
    # One row per notification (usually one), not one joined copy per delivery.
    notifications = Notification.objects.in_bulk({d.notification_id for d in deliveries})
    # A notification deleted meanwhile took its deliveries with it: nothing is left to send or record.
    deliveries = [d for d in deliveries if d.notification_id in notifications]
    for delivery in deliveries:
        delivery.notification = notifications[delivery.notification_id]
    if logger.isEnabledFor(logging.DEBUG):
        for delivery in deliveries:
            logger.debug("delivery %s sending (attempt %d)", delivery.pk, delivery.attempts,
                         extra={"delivery_id": delivery.pk, "notification_id": delivery.notification_id,
                                "channel": delivery.channel, "status": Status.SENDING})
    push_users = {d.recipient_id for d in deliveries if d.channel == Channel.PUSH}
    subscriptions = {}
    for sub in PushSubscription.objects.filter(user_id__in=push_users):
        subscriptions.setdefault(sub.user_id, []).append(sub.as_subscription_info())

    contexts = {
        (row.notification_id, row.recipient_id): row.context
        for row in RecipientContext.objects.filter(notification_id__in={d.notification_id for d in deliveries},
                                                   recipient_id__in={d.recipient_id for d in deliveries})
    }

    by_notification, cancelled = {}, []
    for delivery in deliveries:
        if delivery.notification.status == Notification.Status.CANCELLED:
            cancelled.append(delivery.pk)
        else:
            by_notification.setdefault(delivery.notification_id, []).append(delivery)
    if cancelled:
        Delivery.objects.filter(pk__in=cancelled).update(status=Status.CANCELLED, claim_token="")
        for delivery in deliveries:
            if delivery.pk in cancelled:
                logger.debug("delivery %s cancelled", delivery.pk, extra={"delivery_id": delivery.pk,
                             "notification_id": delivery.notification_id, "status": Status.CANCELLED})

    summary = {}
    budget_ends = time.monotonic() + settings.DELIVERY_TASK_SECONDS
    try:
        for notification_id, batch in by_notification.items():
            send = functools.partial(_part_send, subscriptions=subscriptions, contexts=contexts, now=now,
                                     budget_ends=budget_ends, fixed_clock=fixed_clock)
            _channels_send(batch, send, summary)
            # Read again: the fan-out may have finished while this batch was being sent.
            notification_refresh_status(
                Notification.objects.only("pk", "status", "fanned_out_at").get(pk=notification_id))
    finally:
        _release_leftovers(token, now)
        flush_metrics()
    return summary


def _channels_send(batch, send, summary):
    """Send one notification's share of a chunk with `send(part, summary)`. With DELIVERY_PARALLEL_CHANNELS each
    channel's part goes in a thread of its own, with a recorder of its own, so that a channel waiting for its
    provider's answers does not hold the others back; all of them are done when this returns. Inside a
    transaction (a caller's or a test's), whose rows other connections cannot see, the parts go together here."""
    parts = {}
    for delivery in batch:
        parts.setdefault(delivery.channel, []).append(delivery)
    if len(parts) < 2 or not settings.DELIVERY_PARALLEL_CHANNELS or connection.in_atomic_block:
        send(batch, summary)
        return
    parts = list(parts.values())
    summaries = [{} for _ in parts]
    errors = []

    def run(part, part_summary):
        try:
            send(part, part_summary)
        except BaseException as exc:  # raised again by the task's own thread, once every part is done
            logger.exception("notification %s: the %s part of a chunk broke", part[0].notification_id,
                             part[0].channel, extra={"notification_id": part[0].notification_id,
                                                     "channel": part[0].channel})
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's own connections

    threads = [threading.Thread(target=run, args=(part, part_summary), name=f"send-{part[0].channel}")
               for part, part_summary in zip(parts[1:], summaries[1:])]
    for thread in threads:
        thread.start()
    try:
        send(parts[0], summaries[0])
    finally:
        for thread in threads:
            thread.join()
        for part_summary in summaries:
            for status, count in part_summary.items():
                summary[status] = summary.get(status, 0) + count
    if errors:
        raise errors[0]


def _part_send(part, summary, *, subscriptions, contexts, now, budget_ends, fixed_clock):
    """Claimed deliveries of one notification, recorded as they go by a recorder of their own."""
    recorder = OutcomeRecorder(part, now=now, budget_ends=budget_ends, summary=summary, fixed_clock=fixed_clock)
    if not recorder.stop_reason():
        _batch_deliver(recorder, part, subscriptions, contexts, now)
    recorder.settle()


def _batch_deliver(recorder, batch, subscriptions, contexts, now):
    """One notification's share of the chunk through its notifier; whatever breaks fails its messages only."""
    notification = batch[0].notification
    messages = []
    for delivery in batch:
        try:
            messages.append(message_for(delivery, subscriptions, contexts))
        except ValidationError as exc:  # an address in the database no longer validates
            recorder.fail(delivery, f"invalid address: {'; '.join(exc.messages)}")
        except Exception as exc:
            logger.exception("delivery %s: cannot build its message", delivery.pk)
            recorder.fail(delivery, f"cannot prepare the message: {type(exc).__name__}: {exc}")
    try:
        # A chosen moment (a test, a sweep) is the notifier's clock too; otherwise it reads the real time.
        get_notifier(notification.notifier).deliver(messages, now=now if recorder.fixed_clock else None,
                                                    on_outcome=recorder)
    except Exception as exc:  # the sequence itself broke: the messages it had not reported fail with the reason
        logger.exception("notification %s: the send sequence broke", notification.pk,
                         extra={"notification_id": notification.pk})
        recorder.flush()
        recorder.fail_unreported(f"{type(exc).__name__}: {exc}")
    recorder.flush()


def _release_leftovers(token, now):
    """A delivery this task claimed and still holds has no outcome: it fails with the reason."""
    try:
        left = Delivery.objects.filter(claim_token=token, status=Status.SENDING).update(
            status=Status.FAILED, failed_at=now, claim_token="",
            last_error="the worker's task ended without an outcome for it (it may or may not have been sent)")
    except Exception:  # the database itself is gone: the lease and the sweep take them back
        logger.exception("cannot release the deliveries of claim %s", token)
        return
    if left:
        logger.error("%d deliveries of claim %s ended without an outcome", left, token)


class OutcomeRecorder:
    """The engine's `on_outcome` for one notification's share of a chunk: records as the batch goes.

    Buffers outcomes and writes them every DELIVERY_RECORD_EVERY messages (the inbox's not counted: see
    IDEMPOTENT_CHANNELS) or DELIVERY_RECORD_SECONDS, whichever comes first; after each write it stops the batch
    (`StopSending`) if the notification was cancelled or the task's time budget is spent.
    `settle()` then gives every claimed delivery that got no outcome its end: cancelled,
    handed back to the queue (the budget), or failed with the reason.
    """

    def __init__(self, deliveries, *, now, budget_ends, summary, fixed_clock=False):
        self.fixed_clock = fixed_clock
        self.deliveries = {d.pk: d for d in deliveries}
        self.notification_id = deliveries[0].notification_id
        self.now, self.started = now, time.monotonic()
        self.budget_ends = budget_ends
        self.summary = summary
        self.pending, self.reported = [], set()
        self.counted = 0  # outcomes pending of channels where a resend could repeat a message
        self.flushed_at = self.started
        self.stopped = ""

    def __call__(self, outcome):
        self.pending.append(outcome)
        self.reported.add(outcome.delivery_id)
        if self.deliveries[outcome.delivery_id].channel not in IDEMPOTENT_CHANNELS:
            self.counted += 1
        if (self.counted >= settings.DELIVERY_RECORD_EVERY
                or time.monotonic() - self.flushed_at >= settings.DELIVERY_RECORD_SECONDS):
            self.flush()
            if reason := self.stop_reason():
                raise StopSending(reason)

    def clock(self):
        """The time of a write: the batch's chosen moment (a test, a sweep at a chosen `now`) or the real time."""
        return self.now if self.fixed_clock else timezone.now()

    def flush(self):
        if self.pending:
            pending, self.pending = self.pending, []
            outcomes_record(self.deliveries, pending, self.clock(), self.summary)
        self.flushed_at, self.counted = time.monotonic(), 0

    def stop_reason(self):
        if Notification.objects.filter(pk=self.notification_id, status=Notification.Status.CANCELLED).exists():
            self.stopped = "cancelled"
        elif time.monotonic() >= self.budget_ends:
            self.stopped = "budget"
        return self.stopped

    def fail(self, delivery, error):
        self.reported.add(delivery.pk)
        delivery_fail(delivery, error, self.clock())

    def fail_unreported(self, error):
        unreported = [pk for pk in self.deliveries if pk not in self.reported]
        self.reported.update(unreported)
        Delivery.objects.filter(pk__in=unreported, status=Status.SENDING).update(
            status=Status.FAILED, failed_at=self.clock(), last_error=error[:2000], claim_token="")

    def settle(self):
        unreported = [pk for pk in self.deliveries if pk not in self.reported]
        if self.stopped == "cancelled":
            rows = Delivery.objects.filter(notification_id=self.notification_id)
            rows.filter(pk__in=unreported, status=Status.SENDING).update(status=Status.CANCELLED, claim_token="")
            # A retry recorded while the cancel went through is cancelled too.
            rows.filter(status__in=[Status.QUEUED, Status.RETRYING]).update(status=Status.CANCELLED, claim_token="")
            logger.info("notification %s: sending stopped by its cancel", self.notification_id,
                        extra={"notification_id": self.notification_id, "status": "cancelled"})
        elif self.stopped == "budget" and unreported:
            # Not attempted: back to the queue for another task, the attempt not counted.
            Delivery.objects.filter(pk__in=unreported, status=Status.SENDING).update(
                status=Status.QUEUED, attempts=F("attempts") - 1, claim_token="", enqueued_at=timezone.now())
            enqueue_deliveries(unreported)
            logger.info("handed %d deliveries back to the queue: the task's time budget is spent", len(unreported),
                        extra={"notification_id": self.notification_id})
        elif unreported:
            self.fail_unreported("the notifier returned no outcome for it")


def delivery_fail(delivery, error, now):
    Delivery.objects.filter(pk=delivery.pk).update(status=Status.FAILED, last_error=error[:2000], failed_at=now,
                                                   claim_token="")
    logger.debug("delivery %s failed: %s", delivery.pk, error, extra={
        "delivery_id": delivery.pk, "notification_id": delivery.notification_id, "status": Status.FAILED})


def provider_ids_write(pairs, batch_size=1000):
    """Give each delivery of `pairs` [(pk, provider id)] its provider's id. Rows that share an id (web push
    answers "1 browser(s)") take it in one UPDATE; the rest, ids that differ row by row (twilio's SIDs), in
    one UPDATE … FROM VALUES per `batch_size` rows on PostgreSQL and SQLite (bulk_update's CASE of one WHEN
    per row costs more to build than the batch took to send), bulk_update elsewhere."""
    by_id = defaultdict(list)
    for pk, provider_id in pairs:
        by_id[provider_id].append(pk)
    distinct = []
    for provider_id, pks in by_id.items():
        if len(pks) > 1:
            Delivery.objects.filter(pk__in=pks).update(provider_message_id=provider_id)
        else:
            distinct.append((pks[0], provider_id))
    if connection.vendor not in ("postgresql", "sqlite"):
        Delivery.objects.bulk_update([Delivery(pk=pk, provider_message_id=provider_id) for pk, provider_id in distinct],
                                     ["provider_message_id"], batch_size=batch_size)
        return
    table, column = Delivery._meta.db_table, Delivery._meta.get_field("provider_message_id").column
    for start in range(0, len(distinct), batch_size):
        rows = distinct[start:start + batch_size]
        values = ", ".join(["(CAST(%s AS bigint), %s)"] * len(rows))
        with connection.cursor() as cursor:
            cursor.execute(
                f'WITH given (id, provider_id) AS (VALUES {values}) '
                f'UPDATE "{table}" SET "{column}" = given.provider_id FROM given WHERE "{table}"."id" = given.id',
                [value for row in rows for value in row])


def outcomes_record(deliveries, outcomes, now, summary):
    sent, failed, retrying = [], [], []
    for outcome in outcomes:
        delivery = deliveries[outcome.delivery_id]
        extra = {"delivery_id": delivery.pk, "notification_id": delivery.notification_id, "channel": delivery.channel}
        if outcome.ok:
            delivery.status, delivery.sent_at = Status.SENT, now
            delivery.provider_message_id = outcome.provider_message_id[:200]
            delivery.send_count += 1
            delivery.last_error = ""
            sent.append(delivery)
        elif outcome.permanent or (outcome.attempted and delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS):
            delivery.status, delivery.failed_at = Status.FAILED, now
            delivery.last_error = outcome.error[:2000] + (
                "" if outcome.permanent else f" (gave up after {delivery.attempts} attempts)")
            failed.append(delivery)
        else:
            if not outcome.attempted:  # refused before trying (breaker open): not an attempt
                delivery.attempts -= 1
            delivery.status = Status.RETRYING
            delivery.next_attempt_at = now + _backoff(delivery.attempts, outcome.retry_after)
            delivery.enqueued_at = None
            delivery.last_error = outcome.error[:2000]
            retrying.append(delivery)
        delivery.claim_token = ""
        logger.debug("delivery %s %s", delivery.pk, delivery.status, extra={**extra, "status": delivery.status})
    if sent:
        # What all sent rows share goes in one UPDATE; only the provider's ids differ row by row
        # (bulk_update's CASE per field costs more than the sending itself on a big chunk).
        Delivery.objects.filter(pk__in=[d.pk for d in sent]).update(
            # A receipt that came back while the batch was being sent is newer than "sent": keep it.
            status=Case(When(status__in=[Status.DELIVERED, Status.FAILED], then=F("status")),
                        default=Value(Status.SENT)),
            sent_at=now, send_count=F("send_count") + 1, last_error="", claim_token="")
        # An email sent over SMTP goes by its own Message-ID: those rows take it in one more UPDATE.
        own = [d.pk for d in sent if d.provider_message_id and d.provider_message_id == d.message_id]
        if own:
            Delivery.objects.filter(pk__in=own).update(provider_message_id=Delivery.message_id_sql())
        provider_ids_write([(d.pk, d.provider_message_id) for d in sent
                            if d.provider_message_id and d.provider_message_id != d.message_id])
    if failed:
        Delivery.objects.bulk_update(failed, ["status", "failed_at", "last_error", "claim_token"], batch_size=500)
    if retrying:
        due = defaultdict(list)  # retries handed to the queue for their due time, to the second
        for delivery in retrying:
            if not delivery.digest:
                due_at = delivery.next_attempt_at
                delivery.enqueued_at = due_at.replace(microsecond=0) + timedelta(seconds=1 if due_at.microsecond else 0)
                due[delivery.enqueued_at].append(delivery.pk)
        Delivery.objects.bulk_update(retrying, ["status", "attempts", "next_attempt_at", "enqueued_at", "last_error",
                                                "claim_token"], batch_size=500)
        for when, ids in due.items():
            transaction.on_commit(lambda when=when, ids=ids: enqueue_deliveries_at(ids, when))
    for status, rows in ((Status.SENT, sent), (Status.FAILED, failed), (Status.RETRYING, retrying)):
        if rows:
            summary[status] = summary.get(status, 0) + len(rows)


def notification_refresh_status(notification):
    """Give a fanned-out notification its final status once no delivery is pending."""
    if notification.status != Notification.Status.SENDING or not notification.fanned_out_at:
        return notification
    deliveries = Delivery.objects.filter(notification=notification)
    if deliveries.filter(status__in=Delivery.PENDING_STATUSES).exists():
        return notification
    reached = deliveries.filter(status__in=Delivery.REACHED_STATUSES).exists()
    failed = deliveries.filter(status=Status.FAILED).exists()
    status = (Notification.Status.PARTIALLY_FAILED if reached and failed
              else Notification.Status.FAILED if failed else Notification.Status.SENT)
    if Notification.objects.filter(pk=notification.pk, status=Notification.Status.SENDING).update(
            status=status, completed_at=timezone.now()):
        notification.status = status
        log_notification(notification, status)
        observe_fanout_lag(notification)  # once: only the process whose update finished it gets here
        if notification.is_emergency:
            ledger_record_completed(notification)
    return notification


def ledger_record_completed(notification):
    """The ledger's COMPLETED entry of an emergency alert that reached its final status: deliveries by channel
    and status, recipients, and how many of them have acknowledged (any message of its family)."""
    deliveries = Delivery.objects.filter(notification=notification).order_by()
    counts = {}
    for row in deliveries.values("channel", "status").annotate(n=Count("id")):
        counts.setdefault(row["channel"], {})[row["status"]] = row["n"]
    recipients = deliveries.values("recipient_id").distinct()
    acknowledged = (InboxMessage.objects.of_family(notification).acknowledged()
                    .filter(recipient_id__in=recipients).order_by().values("recipient_id").distinct().count())
    LedgerEntry.record(notification, LedgerEntry.Event.COMPLETED, data={
        "status": notification.status, "deliveries": counts, "recipients": recipients.count(),
        "reached": deliveries.filter(status__in=Delivery.REACHED_STATUSES).values("recipient_id").distinct().count(),
        "acknowledged": acknowledged})


def message_send_now(notifier, message):
    """Send one message through `notifier`'s fixed sequence now, bypassing the queue (a channel test).

    Returns its Outcome; the circuit breaker and the performance metrics see it like any other.
    """
    [outcome] = notifier.deliver([message])
    flush_metrics()
    return outcome
