"""Writes: the one sanctioned way to send, fan out, deliver, retry and cancel notifications.

Every door (admin, pages, API, commands) and every task calls these functions.
"""

import hashlib
import itertools
import json
import logging
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django_q.tasks import async_task

from accounts.models import Cohort, Role
from channels_app.base import Message, Recipient
from channels_app.constants import Category, Channel, Priority
from channels_app.decorators import flush_metrics
from channels_app.models import PushSubscription
from channels_app.registry import get_notifier

from .models import Delivery, FanoutPage, Notification, RecipientContext
from .links import link_url
from .planning import DeliveryPlanner
from .selectors import audience_users, is_admin

logger = logging.getLogger(__name__)
Status = Delivery.Status


def _log_notification(notification, status):
    logger.info("notification %s %s", notification.pk, status,
                extra={"notification_id": notification.pk, "status": status})


# --- sending ------------------------------------------------------------------------------

def audience_check(sender, audience, *, api_key=None):
    """Raise PermissionDenied unless `sender` may reach every part of `audience`.

    Admin reaches anyone; Staff the cohorts they manage (and users in them); a request made
    with an API key that names cohorts is held to those cohorts, whoever owns the key.
    """
    if sender is None:
        return
    if api_key is not None and api_key.pk and api_key.cohorts.exists():
        allowed = set(api_key.cohorts.values_list("code", flat=True))
    elif is_admin(sender):
        return
    else:
        allowed = set(sender.managed_cohorts.values_list("code", flat=True))
    if audience.get("everyone") or audience.get("roles"):
        raise PermissionDenied("Only an administrator may send to everyone or to a role.")
    refused = set(audience.get("cohorts", [])) - allowed
    if refused:
        raise PermissionDenied(f"You do not manage the cohort(s): {', '.join(sorted(refused))}.")
    if audience.get("users"):
        # Membership, active or not: an inactive member is skipped at fan-out, not refused here.
        reachable = set(
            Cohort.members.through.objects.filter(cohort__code__in=allowed, user__username__in=audience["users"])
            .values_list("user__username", flat=True)
        )
        outside = set(audience["users"]) - reachable
        if outside:
            raise PermissionDenied(f"These users are not in a cohort you manage: {', '.join(sorted(outside))}.")


def clean_audience(audience):
    audience = audience or {}
    unknown = set(audience) - {"users", "cohorts", "roles", "everyone"}
    errors = []
    if unknown:
        errors.append(f"Unknown audience key(s): {', '.join(sorted(unknown))}.")
    cleaned = {
        "users": sorted({str(u) for u in audience.get("users") or []}),
        "cohorts": sorted({str(c) for c in audience.get("cohorts") or []}),
        "roles": sorted({str(r) for r in audience.get("roles") or []}),
        "everyone": bool(audience.get("everyone")),
    }
    if not (cleaned["users"] or cleaned["cohorts"] or cleaned["roles"] or cleaned["everyone"]):
        errors.append("The audience is empty: name users, cohorts, roles or everyone.")
    missing = set(cleaned["cohorts"]) - set(Cohort.objects.filter(code__in=cleaned["cohorts"])
                                          .values_list("code", flat=True))
    if missing:
        errors.append(f"Unknown cohort(s): {', '.join(sorted(missing))}.")
    bad_roles = set(cleaned["roles"]) - set(Role.values)
    if bad_roles:
        errors.append(f"Unknown role(s): {', '.join(sorted(bad_roles))}.")
    if errors:
        raise ValidationError({"audience": errors})
    return {key: value for key, value in cleaned.items() if value}


def _fingerprint(fields):
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def notification_send(*, sender, notifier, title, body, audience, category=None, priority=Priority.NORMAL,
                      channels=None, data=None, scheduled_for=None, deadline=None, reminder_offsets=None,
                      requires_ack=None, idempotency_key=None, api_key=None, parent=None):
    """Accept a notification and hand its fan-out to the workers. Returns (notification, created).

    With an `idempotency_key`, sending the same request again returns the first
    notification (created False); the same key with a different request raises
    IdempotencyConflict.
    """
    notifier_cls = type(get_notifier(notifier))
    if getattr(notifier_cls, "internal", False):
        raise ValidationError({"notifier": [f"{notifier_cls.label} messages are made by FlashNotify, not sent."]})
    data = dict(data or {})
    errors = {}
    category = category or (notifier_cls.categories[0] if notifier_cls.categories else None)
    if category not in Category.values:
        errors["category"] = [f"Choose one of {', '.join(Category.values)}."]
    elif notifier_cls.categories and category not in notifier_cls.categories:
        errors["category"] = [f"{notifier_cls.label} notifications cannot be of category {category!r}."]
    if priority not in Priority.values:
        errors["priority"] = [f"Choose one of {', '.join(Priority.values)}."]
    channels = list(dict.fromkeys(channels or notifier_cls.channels))
    bad = [c for c in channels if c not in notifier_cls.channels]
    if bad:
        errors["channels"] = [f"{notifier_cls.label} does not send on {', '.join(bad)}; "
                              f"it sends on {', '.join(notifier_cls.channels)}."]
    if not (title or "").strip():
        errors["title"] = ["A title is required."]
    if not (body or "").strip():
        errors["body"] = ["A body is required."]
    try:
        notifier_cls.validate_data(data)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        audience = clean_audience(audience)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        reminder_offsets = sorted({int(m) for m in reminder_offsets or []}, reverse=True)
    except (TypeError, ValueError):
        errors["reminder_offsets"] = ["Give reminder offsets as whole minutes before the deadline."]
        reminder_offsets = []
    if any(m <= 0 for m in reminder_offsets):
        errors["reminder_offsets"] = ["Reminder offsets are minutes before the deadline: positive numbers."]
    if reminder_offsets and not deadline:
        errors["reminder_offsets"] = ["Reminders need a deadline."]
    if errors:
        raise ValidationError(errors)
    audience_check(sender, audience, api_key=api_key)
    requires_ack = bool(requires_ack) or getattr(notifier_cls, "requires_ack", False)

    fields = dict(notifier=notifier, title=title, body=body, category=category, priority=priority,
                  channels=channels, data=data, audience=audience, scheduled_for=scheduled_for,
                  deadline=deadline, requires_ack=requires_ack, reminder_offsets=reminder_offsets)
    fingerprint = _fingerprint(fields) if idempotency_key else ""
    if idempotency_key:
        existing = Notification.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return _replay(existing, fingerprint)
    now = timezone.now()
    scheduled = bool(scheduled_for and scheduled_for > now)
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                sender=sender, idempotency_key=idempotency_key, request_fingerprint=fingerprint, parent=parent,
                status=Notification.Status.SCHEDULED if scheduled else Notification.Status.QUEUED, **fields,
            )
            if audience.get("cohorts"):
                notification.cohorts.set(Cohort.objects.filter(code__in=audience["cohorts"]))
            if reminder_offsets:
                _schedule_reminders(notification, now=now)
            if not scheduled:
                transaction.on_commit(lambda: enqueue_fan_out(notification.pk))
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            return _replay(Notification.objects.get(idempotency_key=idempotency_key), fingerprint)
        raise
    _log_notification(notification, notification.status)
    return notification, True


class IdempotencyConflict(Exception):
    def __init__(self, notification):
        super().__init__(f"Idempotency key already used for a different request (notification {notification.pk}).")
        self.notification = notification


def _replay(existing, fingerprint):
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(existing)
    return existing, False


def _schedule_reminders(notification, *, now=None):
    """Create one scheduled reminder per offset (minutes before the deadline) that is still ahead."""
    now = now or timezone.now()
    for minutes in notification.reminder_offsets:
        at = notification.deadline - timedelta(minutes=minutes)
        if at <= now:
            continue
        Notification.objects.create(
            notifier=notification.notifier, category=Category.DEADLINE if notification.category != Category.SECURITY
            else notification.category, priority=notification.priority,
            title=notification.title, body=notification.body, data={**notification.data, "reminder_minutes": minutes},
            channels=notification.channels, audience=notification.audience, sender=notification.sender,
            status=Notification.Status.SCHEDULED, scheduled_for=at, deadline=notification.deadline,
            requires_ack=False, parent=notification,
        ).cohorts.set(notification.cohorts.all())


def enqueue_fan_out(notification_id):
    async_task("notifications.tasks.fan_out", notification_id, task_name=f"fan-out-{notification_id}"[:100])


def enqueue_deliveries(delivery_ids):
    """Hand delivery ids to the workers, one task per chunk."""
    size = settings.FANOUT_CHUNK_SIZE
    for start in range(0, len(delivery_ids), size):
        async_task("notifications.tasks.send_deliveries", delivery_ids[start:start + size])


# --- fan-out ------------------------------------------------------------------------------

RECIPIENT_FIELDS = ("pk", "email", "phone", "phone_verified_at", "timezone", "quiet_hours_start", "quiet_hours_end",
                    "digest_hour", "language")


def notification_fan_out(notification_id, *, now=None, spread=False):
    """Expand the audience into deliveries, page by page, and hand the deliveries to the workers.

    The audience is streamed as ids and cut into pages (`FanoutPage`, FANOUT_CHUNK_SIZE
    recipients each). With `spread` (the worker task), each page is planned — and its first
    chunk sent — by a task of its own, so every worker plans; otherwise pages are planned
    here, in order. Resumable: pages are saved with the cursor, are unique per start, and are
    planned once; deliveries are unique per recipient and channel. A rerun after a crash
    neither loses nor doubles anything.
    """
    now = now or timezone.now()
    started = Notification.objects.filter(
        pk=notification_id, status__in=[Notification.Status.QUEUED, Notification.Status.SCHEDULED]
    ).update(status=Notification.Status.SENDING, started_at=now)
    notification = Notification.objects.select_related("sender").get(pk=notification_id)
    if notification.status != Notification.Status.SENDING or notification.fanned_out_at:
        return notification
    if started:
        _log_notification(notification, Notification.Status.SENDING)
    size, cursor = settings.FANOUT_CHUNK_SIZE, notification.fanout_cursor
    audience = audience_users(notification.audience).order_by("pk").values_list("pk", flat=True)
    batch = 20 if spread else 1  # pages read (ids only, one query), saved and handed out together
    while True:
        block = iter(audience.filter(pk__gt=cursor)[: size * batch])
        pages = []
        while ids := list(itertools.islice(block, size)):
            pages.append(FanoutPage(notification=notification, after_pk=cursor, last_pk=ids[-1], size=len(ids),
                                    enqueued_at=timezone.now()))
            cursor = ids[-1]
        if not pages:
            break
        with transaction.atomic():
            if Notification.objects.filter(pk=notification_id, status=Notification.Status.CANCELLED).exists():
                return notification
            FanoutPage.objects.bulk_create(pages, ignore_conflicts=True)
            Notification.objects.filter(pk=notification_id).update(
                fanout_cursor=cursor, recipient_count=F("recipient_count") + sum(p.size for p in pages))
            saved = list(FanoutPage.objects.filter(notification=notification, after_pk__in=[p.after_pk for p in pages],
                                                   planned_at__isnull=True).values_list("pk", flat=True))
            if spread:
                transaction.on_commit(lambda saved=saved: enqueue_fanout_pages(saved))
        if not spread:
            for page_id in saved:
                fanout_page_plan(page_id, now=now, send_first_chunk=False)
    last = FanoutPage.objects.filter(notification=notification).order_by("-after_pk").first()
    if last is None:  # an empty audience
        _fan_out_finish(notification)
    else:
        FanoutPage.objects.filter(pk=last.pk).update(is_last=True)
        _fan_out_finish_if_planned(notification)
    return notification


def enqueue_fanout_pages(page_ids):
    for page_id in page_ids:
        async_task("notifications.tasks.plan_page", page_id)


def fanout_page_plan(page_id, *, now=None, send_first_chunk=True):
    """Plan one page of a fan-out (once), then send its first chunk here and enqueue the rest."""
    now = now or timezone.now()
    page = FanoutPage.objects.select_related("notification__sender").get(pk=page_id)
    notification = page.notification
    if page.planned_at or notification.status != Notification.Status.SENDING:
        return 0
    planner = DeliveryPlanner(notification, get_notifier(notification.notifier), now=now)
    users = list(audience_users(notification.audience).filter(pk__gt=page.after_pk, pk__lte=page.last_pk)
                 .order_by("pk").only(*RECIPIENT_FIELDS))
    with transaction.atomic():
        if not FanoutPage.objects.filter(pk=page_id, planned_at__isnull=True).update(planned_at=now):
            return 0  # another worker planned it
        planned = planner.plan(users)
        for delivery in planned:  # those due now are handed to the workers below
            if delivery.status == Status.QUEUED and not delivery.digest and delivery.next_attempt_at <= now:
                delivery.enqueued_at = now
        Delivery.objects.bulk_create(planned, ignore_conflicts=True)
        # Rows made by an earlier, interrupted run keep their own enqueued_at (the sweep owns them).
        ids = list(Delivery.objects.filter(notification=notification, recipient__in=users, status=Status.QUEUED,
                                           enqueued_at=now).values_list("id", flat=True))
        first = ids[: settings.FANOUT_CHUNK_SIZE] if send_first_chunk else []
        transaction.on_commit(lambda: enqueue_deliveries(ids[len(first):]))
    _fan_out_finish_if_planned(notification)
    if first:
        deliveries_send(first, now=now)
    return len(ids)


def _fan_out_finish_if_planned(notification):
    """Once the last page is known and every page is planned, the fan-out is done."""
    pages = FanoutPage.objects.filter(notification=notification)
    if pages.filter(is_last=True).exists() and not pages.filter(planned_at__isnull=True).exists():
        _fan_out_finish(notification)


def _fan_out_finish(notification):
    if Notification.objects.filter(pk=notification.pk, fanned_out_at__isnull=True).update(
            fanned_out_at=timezone.now()):
        notification.refresh_from_db()
        logger.info("notification %s fanned out to %d recipients", notification.pk, notification.recipient_count,
                    extra={"notification_id": notification.pk})
        notification_refresh_status(notification)


# --- delivering ---------------------------------------------------------------------------

def _backoff(attempts, retry_after=None):
    if retry_after:
        return timedelta(seconds=float(retry_after))
    base = settings.DELIVERY_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    capped = min(base, settings.DELIVERY_RETRY_MAX_SECONDS)
    return timedelta(seconds=capped * random.uniform(0.5, 1.0))  # "equal jitter"


def action_url(name, delivery):
    return link_url(name, user_id=delivery.recipient_id, notification_id=delivery.notification_id)


def _message(delivery, push_subscriptions, contexts=None):
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
    """Claim the given deliveries that are due, send them, and record every outcome."""
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = Delivery.objects.filter(
        pk__in=delivery_ids, status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now, digest=False,
    ).update(status=Status.SENDING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return {}
    deliveries = list(Delivery.objects.filter(claim_token=token).select_related("recipient"))
    # One row per notification (usually one), not one joined copy per delivery.
    notifications = Notification.objects.in_bulk({d.notification_id for d in deliveries})
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
    for notification_id, batch in by_notification.items():
        notification = batch[0].notification
        notifier = get_notifier(notification.notifier)
        messages = []
        for delivery in batch:
            try:
                messages.append(_message(delivery, subscriptions, contexts))
            except ValidationError as exc:  # an address in the database no longer validates
                _record_failure(delivery, f"invalid address: {'; '.join(exc.messages)}", now)
        outcomes = notifier.deliver(messages, now=now)
        _record_outcomes({d.pk: d for d in batch}, outcomes, now, summary)
        # Read again: the fan-out may have finished while this batch was being sent.
        notification_refresh_status(Notification.objects.only("pk", "status", "fanned_out_at").get(pk=notification_id))
    flush_metrics()
    return summary


def _record_failure(delivery, error, now):
    Delivery.objects.filter(pk=delivery.pk).update(status=Status.FAILED, last_error=error[:2000], failed_at=now,
                                                   claim_token="")
    logger.debug("delivery %s failed: %s", delivery.pk, error, extra={
        "delivery_id": delivery.pk, "notification_id": delivery.notification_id, "status": Status.FAILED})


def _record_outcomes(deliveries, outcomes, now, summary):
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
        with_ids = [d for d in sent if d.provider_message_id]
        if with_ids:
            Delivery.objects.bulk_update(with_ids, ["provider_message_id"], batch_size=1000)
    if failed:
        Delivery.objects.bulk_update(failed, ["status", "failed_at", "last_error", "claim_token"], batch_size=500)
    if retrying:
        Delivery.objects.bulk_update(retrying, ["status", "attempts", "next_attempt_at", "enqueued_at", "last_error",
                                                "claim_token"], batch_size=500)
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
        _log_notification(notification, status)
    return notification


# --- the sweep ------------------------------------------------------------------------------

def deliveries_sweep(*, now=None):
    """Run periodically: reclaim deliveries of dead workers, start due schedules and retries.

    Returns counts of what it did.
    """
    now = now or timezone.now()
    done = {}
    lease_expired = Delivery.objects.filter(status=Status.SENDING,
                                            claimed_at__lt=now - timedelta(seconds=settings.DELIVERY_LEASE_SECONDS))
    expired = list(lease_expired.values_list("id", "notification_id")[:10_000])
    expired_ids = [pk for pk, _ in expired]
    if expired_ids:
        done["reclaimed"] = Delivery.objects.filter(pk__in=expired_ids, status=Status.SENDING).update(
            # Due since it was claimed: a sweep run at a chosen `now` leaves it due for the workers too.
            status=Status.RETRYING, next_attempt_at=F("claimed_at"), enqueued_at=None, claim_token="",
            reclaims=F("reclaims") + 1,
            last_error="taken back from a worker that stopped while sending (a duplicate is possible)",
        )
        for pk, notification_id in expired:
            logger.debug("delivery %s reclaimed", pk, extra={"delivery_id": pk, "notification_id": notification_id,
                                                             "status": Status.RETRYING})
        logger.warning("reclaimed %d deliveries from dead workers", done["reclaimed"],
                       extra={"notification_ids": sorted({n for _, n in expired})})

    started = []
    for notification in Notification.objects.filter(status=Notification.Status.SCHEDULED, scheduled_for__lte=now):
        if Notification.objects.filter(pk=notification.pk, status=Notification.Status.SCHEDULED).update(
                status=Notification.Status.QUEUED):
            _log_notification(notification, Notification.Status.QUEUED)
            enqueue_fan_out(notification.pk)
            started.append(notification.pk)
            done["scheduled_started"] = done.get("scheduled_started", 0) + 1

    # Fan-outs whose task was lost (Redis broker, dead worker) are resumed from their cursor.
    stale = now - timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    for notification_id in Notification.objects.filter(
            # Queued since its creation, or since its schedule came due (not those just started above).
            Q(status=Notification.Status.QUEUED, scheduled_for__isnull=True, created_at__lt=stale)
            | Q(status=Notification.Status.QUEUED, scheduled_for__lt=stale)
            | Q(status=Notification.Status.SENDING, fanned_out_at__isnull=True, started_at__lt=stale)
    ).exclude(pk__in=started).values_list("pk", flat=True):
        enqueue_fan_out(notification_id)
        done["fan_outs_resumed"] = done.get("fan_outs_resumed", 0) + 1
    # Pages whose planning task was lost are handed out again (planning one twice is a no-op).
    pages = list(FanoutPage.objects.filter(planned_at__isnull=True, enqueued_at__lt=stale,
                                           notification__status=Notification.Status.SENDING)
                 .values_list("pk", flat=True)[:10_000])
    if pages:
        FanoutPage.objects.filter(pk__in=pages).update(enqueued_at=now)
        enqueue_fanout_pages(pages)
        done["pages_enqueued"] = len(pages)

    from .digest import digests_enqueue
    from .escalation import escalations_run

    done.update(escalations_run(now=now))  # before the enqueue below, which sends what it creates
    done.update(digests_enqueue(now=now))

    due = Delivery.objects.filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale),
        status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now, digest=False,
    )
    ids = list(due.order_by("next_attempt_at").values_list("id", flat=True)[:50_000])
    if ids:
        for start in range(0, len(ids), 5000):
            Delivery.objects.filter(pk__in=ids[start:start + 5000]).update(enqueued_at=now)
        enqueue_deliveries(ids)
        done["enqueued"] = len(ids)

    # Notifications whose last deliveries ended in a failed or reclaimed task.
    for notification in Notification.objects.filter(status=Notification.Status.SENDING,
                                                    fanned_out_at__isnull=False):
        notification_refresh_status(notification)
    return done


# --- operator actions -------------------------------------------------------------------

def notification_cancel(notification, *, by=None):
    """Cancel a scheduled or running notification: pending deliveries are cancelled, sent ones stay."""
    with transaction.atomic():
        changed = Notification.objects.filter(
            pk=notification.pk,
            status__in=[Notification.Status.SCHEDULED, Notification.Status.QUEUED, Notification.Status.SENDING],
        ).update(status=Notification.Status.CANCELLED, completed_at=timezone.now())
        if not changed:
            raise ValidationError(f"Notification {notification.pk} is {notification.status} and cannot be cancelled.")
        cancelled = Delivery.objects.filter(
            notification=notification, status__in=[Status.QUEUED, Status.RETRYING]
        ).update(status=Status.CANCELLED, claim_token="")
        Notification.objects.filter(parent=notification, status=Notification.Status.SCHEDULED).update(
            status=Notification.Status.CANCELLED)
    notification.refresh_from_db()
    _log_notification(notification, Notification.Status.CANCELLED)
    return cancelled


def deliveries_retry(deliveries):
    """Send failed deliveries again now (an operator's decision); returns how many were queued."""
    now = timezone.now()
    ids = list(deliveries.filter(status=Status.FAILED).values_list("id", flat=True))
    if not ids:
        return 0
    with transaction.atomic():
        Delivery.objects.filter(pk__in=ids).update(status=Status.QUEUED, next_attempt_at=now, enqueued_at=now,
                                                   attempts=0, failed_at=None)
        notification_ids = set(Delivery.objects.filter(pk__in=ids).values_list("notification_id", flat=True))
        Notification.objects.filter(pk__in=notification_ids).exclude(status=Notification.Status.CANCELLED).update(
            status=Notification.Status.SENDING, completed_at=None)
        transaction.on_commit(lambda: enqueue_deliveries(ids))
    return len(ids)


# --- receipts -----------------------------------------------------------------------------

def delivery_record_receipt(*, channel, provider_message_id, event, reason="", delivery_id=None):
    """Apply a provider's receipt (delivered, bounced, failed, complained) to the delivery it names.

    A receipt that names its delivery (`delivery_id`, carried in the callback URL or the
    message's metadata) may arrive before the worker has recorded the send: it still applies,
    and the worker's record keeps it.
    """
    if delivery_id:
        deliveries = Delivery.objects.filter(pk=delivery_id, channel=channel)
    else:
        deliveries = Delivery.objects.filter(channel=channel, provider_message_id=provider_message_id)
    now = timezone.now()
    if event == "delivered":
        count = deliveries.filter(status__in=[Status.SENT, Status.SENDING]).update(
            status=Status.DELIVERED, delivered_at=now)
    elif event in ("bounced", "failed", "rejected", "complained", "undelivered"):
        count = deliveries.exclude(status=Status.FAILED).update(
            status=Status.FAILED, failed_at=now, last_error=f"{event}: {reason}"[:2000])
    else:
        return 0
    for delivery in deliveries.only("pk", "notification_id"):
        logger.debug("delivery %s receipt %s", delivery.pk, event,
                     extra={"delivery_id": delivery.pk, "notification_id": delivery.notification_id, "event": event})
    return count


# --- preview --------------------------------------------------------------------------------

def notification_preview(notification, recipient, *, context=None):
    """{channel: {part: text}}: `notification` as `recipient` (a User) would get it on each of its channels.

    Renders only — sends nothing, writes nothing — so a draft (an unsaved Notification built
    from a compose form) can be previewed. Links are signed as real ones would be; a draft's
    point at a placeholder.
    """
    notifier = get_notifier(notification.notifier)
    channels = [c for c in (notification.channels or notifier.channels) if c in notifier.channels]
    try:
        person = Recipient.from_user(recipient)
    except ValidationError:  # a stored address that no longer validates: the content is still worth seeing
        person = Recipient(user_id=recipient.pk, username=recipient.username, name=recipient.get_full_name(),
                           language=recipient.language, timezone=recipient.timezone)

    def link(name):
        return link_url(name, user_id=recipient.pk, notification_id=notification.pk)

    preview = {}
    for channel in channels:
        message = Message(
            delivery_id=None, channel=channel, recipient=person, notification=notification,
            unsubscribe_url=link("unsubscribe") if channel == Channel.EMAIL else "",
            ack_url=link("acknowledge") if notification.requires_ack else "", context=context,
        )
        preview[channel] = notifier.render(message)
    return preview


# --- console and command helpers -------------------------------------------------------

def notification_resend_unacknowledged(notification, *, by):
    """Send `notification` again to the recipients who have not acknowledged it.

    Returns (new notification or None, how many recipients). The resend is a child of the
    original (`parent`), goes through `notification_send` like any other, and is itself to be
    acknowledged.
    """
    from channels_app.models import InboxMessage

    if not notification.requires_ack:
        raise ValidationError(f"Notification {notification.pk} does not ask for acknowledgement.")
    acknowledged = InboxMessage.objects.filter(notification=notification, acknowledged_at__isnull=False) \
        .values("recipient_id")
    usernames = sorted(
        Delivery.objects.filter(notification=notification).exclude(recipient_id__in=acknowledged)
        .values_list("recipient__username", flat=True).distinct()
    )
    if not usernames:
        return None, 0
    resent, _ = notification_send(
        sender=by, notifier=notification.notifier, category=notification.category, priority=notification.priority,
        title=notification.title, body=notification.body, data=notification.data, channels=notification.channels,
        audience={"users": usernames}, deadline=notification.deadline, requires_ack=True, parent=notification,
    )
    logger.info("notification %s resent to %d unacknowledged recipients as %s", notification.pk, len(usernames),
                resent.pk, extra={"notification_id": notification.pk})
    return resent, len(usernames)


TESTABLE_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)


def channel_send_test(*, channel, address=None, user=None, notifier="academic"):
    """Send one test message on `channel` to `address` (or `user`'s address) now, bypassing the queue.

    `address` is an email address, an E.164 phone number, or a push subscription (dict or JSON).
    Returns the provider's Outcome (ok, provider_message_id or error). Goes through the
    notifier's fixed sequence, so the circuit breaker and the performance metrics see it.
    """
    if channel not in TESTABLE_CHANNELS:
        raise ValidationError(f"Choose a channel with a provider: {', '.join(TESTABLE_CHANNELS)}.")
    fields = {"user_id": getattr(user, "pk", None), "username": getattr(user, "username", "test"),
              "name": user.get_full_name() if user else "", "language": getattr(user, "language", "en")}
    subscriptions = []
    if channel == Channel.PUSH:
        if address:
            subscriptions = [json.loads(address) if isinstance(address, str) else address]
        elif user:
            subscriptions = [s.as_subscription_info() for s in PushSubscription.objects.filter(user=user)]
        if not subscriptions or not all(isinstance(s, dict) and s.get("endpoint") for s in subscriptions):
            raise ValidationError("No push subscription to send to.")
    elif channel == Channel.EMAIL:
        fields["email"] = address or getattr(user, "email", "")
    else:
        fields["phone"] = address or getattr(user, "phone", "")
    if not (fields.get("email") or fields.get("phone") or subscriptions):
        raise ValidationError(f"No {channel} address to send to.")
    recipient = Recipient(**fields, push_subscriptions=subscriptions)  # the descriptors validate the address
    notifier_obj = get_notifier(notifier)
    now = timezone.now()
    notification = Notification(notifier=notifier, category=type(notifier_obj).categories[0],
                                title="FlashNotify test message",
                                body=f"A test of the {channel} channel, sent {now:%Y-%m-%d %H:%M} UTC.",
                                data={"severity": "test"}, channels=[channel])
    message = Message(delivery_id=0, channel=channel, recipient=recipient, notification=notification,
                      message_id=f"<test-{uuid.uuid4().hex}@flashnotify.localhost>")
    [outcome] = notifier_obj.deliver([message])
    flush_metrics()
    logger.info("test message on %s: %s", channel, "sent" if outcome.ok else outcome.error,
                extra={"channel": channel, "ok": outcome.ok})
    return outcome


def deliveries_purge(*, older_than, batch_size=2000, now=None, progress=None):
    """Delete finished deliveries created more than `older_than` (a timedelta) ago, batch by batch.

    Each batch is its own short transaction; pending deliveries are never touched. Returns the count.
    """
    cutoff = (now or timezone.now()) - older_than
    old = Delivery.objects.filter(created_at__lt=cutoff).exclude(status__in=Delivery.PENDING_STATUSES)
    deleted = 0
    while True:
        ids = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            count, _ = Delivery.objects.filter(pk__in=ids).delete()
        deleted += count
        if progress:
            progress(deleted)
    logger.info("purged %d deliveries created before %s", deleted, cutoff.isoformat())
    return deleted
