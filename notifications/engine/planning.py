"""Deciding, for a chunk of recipients, which deliveries a notification makes and when.

Preferences, defaults, quiet hours, digests, reachability and suppression are applied here with a
fixed number of queries per chunk, whatever its size. Every requested channel of every recipient
gets a row: one not made is `skipped` with its `Delivery.Reason`, one held (quiet hours, digest)
is `queued` with its reason and until when, so "why didn't X get it?" always has an answer.
"""

import datetime as dt
import zoneinfo

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from channels_app.constants import MANDATORY_CATEGORIES, URGENT_PRIORITIES, Category, Channel, Priority
from channels_app.models import PushSubscription

from ..models import CategoryDefault, Delivery, Notification, Preference

Reason = Delivery.Reason
# Receipts record a hard bounce or a complaint as a failure whose error starts with the event.
SUPPRESSING_ERRORS = ("bounced", "complained")
SUPPRESSIBLE_CHANNELS = (Channel.EMAIL, Channel.SMS)

# What the planner reads of each recipient (one `.only()` for every page).
# (and what the first chunk, sent by the page's task from these rows, needs to address its messages).
RECIPIENT_FIELDS = ("pk", "username", "first_name", "last_name", "email", "phone", "phone_verified_at", "timezone",
                    "quiet_hours_start", "quiet_hours_end", "digest_hour", "language", "sms_stopped_at")

_ON = {Channel.EMAIL: True, Channel.INBOX: True, Channel.PUSH: True, Channel.SMS: False}

# What a category does for users who have not chosen, until an administrator says otherwise
# (a CategoryDefault row): {channel: enabled}. SMS costs money and wakes people: only for security.
BUILTIN_DEFAULTS = {
    Category.ANNOUNCEMENT: _ON,
    Category.DEADLINE: _ON,
    Category.GRADE: _ON,
    Category.TIMETABLE: _ON,
    Category.ADMINISTRATIVE: {**_ON, Channel.PUSH: False},
    Category.SECURITY: {channel: True for channel in Channel.values},
}


def category_defaults(category):
    """{channel: (enabled, digest)} for a category, from CategoryDefault or the built-in defaults."""
    builtin = BUILTIN_DEFAULTS.get(category, _ON)
    defaults = {channel: (builtin.get(channel, False), False) for channel in Channel.values}
    for row in CategoryDefault.objects.filter(category=category):
        defaults[row.channel] = (row.enabled, row.digest)
    return defaults


def all_category_defaults():
    """{category: {channel: (enabled, digest)}} for every category, in one query."""
    defaults = {
        category: {channel: (BUILTIN_DEFAULTS.get(category, _ON).get(channel, False), False)
                   for channel in Channel.values}
        for category in Category.values
    }
    for row in CategoryDefault.objects.all():
        if row.category in defaults:
            defaults[row.category][row.channel] = (row.enabled, row.digest)
    return defaults


def quiet_hours_end(user, at):
    """When `at` falls inside the user's quiet hours, the moment they end; otherwise None."""
    start, end = user.quiet_hours_start, user.quiet_hours_end
    if start is None or end is None or start == end:
        return None
    try:
        zone = zoneinfo.ZoneInfo(user.timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.timezone.utc
    local = at.astimezone(zone)
    now_t = local.time()
    inside = start <= now_t < end if start < end else (now_t >= start or now_t < end)
    if not inside:
        return None
    end_date = local.date() if now_t < end else local.date() + dt.timedelta(days=1)
    # Wall-clock time in the zone, so a daylight-saving change is honoured.
    return dt.datetime.combine(end_date, end, tzinfo=zone).astimezone(dt.timezone.utc)


def next_digest_time(user, at):
    """The next occurrence of the user's digest hour, local time, after `at`."""
    try:
        zone = zoneinfo.ZoneInfo(user.timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.timezone.utc
    local = at.astimezone(zone)
    candidate = dt.datetime.combine(local.date(), dt.time(user.digest_hour or 0), tzinfo=zone)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(user.digest_hour or 0), tzinfo=zone)
    return candidate.astimezone(dt.timezone.utc)


def planned_channels(notification, notifier):
    """The channels a notification is planned on: those it asks for that its notifier sends, else all of them."""
    return [c for c in notification.channels if c in notifier.channels] or list(notifier.channels)


class DeliveryPlanner:
    """Plans the deliveries of one notification; `plan(users)` is called once per chunk."""

    def __init__(self, notification, notifier, *, now=None):
        self.notification = notification
        self.notifier = notifier
        self.now = now or timezone.now()
        self.channels = planned_channels(notification, notifier)
        self.mandatory = notification.category in MANDATORY_CATEGORIES
        self.urgent = self.mandatory or notification.priority in URGENT_PRIORITIES
        self.real_emergency = self.mandatory and notification.alert_status == Notification.AlertStatus.ACTUAL
        self.defaults = category_defaults(notification.category)
        # Set by the fan-out when the inbox deliveries of `plain` recipients are written as a set
        # (notifications.engine.inbox_sets): `plan` then leaves their inbox channel out.
        self.inbox_by_set = False

    def plain_q(self):
        """The recipients (a Q on users) whose inbox delivery is made at once or skipped, never held: the
        SQL twin of `plain`."""
        if self.urgent:
            return Q()
        return (Q(quiet_hours_start__isnull=True) | Q(quiet_hours_end__isnull=True)
                | Q(quiet_hours_start=F("quiet_hours_end")))

    def plain(self, user):
        """Whether no quiet hours can hold this user's deliveries (see `quiet_hours_end`)."""
        return (self.urgent or user.quiet_hours_start is None or user.quiet_hours_end is None
                or user.quiet_hours_start == user.quiet_hours_end)

    def plan(self, users):
        """Return unsaved Delivery objects for `users` (a list): one per requested channel, at least."""
        user_ids = [user.pk for user in users]
        preferences = {
            (pref.user_id, pref.channel): (pref.enabled, pref.digest)
            for pref in Preference.objects.filter(user_id__in=user_ids, category=self.notification.category)
        }
        with_push = set()
        if Channel.PUSH in self.channels or any(self.notifier.fallback.get(c) == Channel.PUSH for c in self.channels):
            with_push = set(PushSubscription.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True))
        suppressed = self.suppressed(user_ids)
        deliveries = []
        for user in users:
            deliveries += self.plan_user(user, preferences, with_push, suppressed)
        return deliveries

    def suppressed(self, user_ids):
        """{(user id, channel)} with a hard bounce or complaint recorded within DELIVERY_SUPPRESSION_DAYS."""
        channels = {c for c in self.channels} | {self.notifier.fallback.get(c) for c in self.channels}
        channels &= set(SUPPRESSIBLE_CHANNELS)
        if self.mandatory or not channels or settings.DELIVERY_SUPPRESSION_DAYS <= 0:
            return set()
        errors = Q()
        for prefix in SUPPRESSING_ERRORS:
            errors |= Q(last_error__startswith=prefix)
        since = self.now - dt.timedelta(days=settings.DELIVERY_SUPPRESSION_DAYS)
        return set(Delivery.objects.filter(errors, recipient_id__in=user_ids, channel__in=channels,
                                           status=Delivery.Status.FAILED, failed_at__gte=since)
                   .values_list("recipient_id", "channel").distinct().order_by())

    def refusal(self, user, channel, preferences):
        """Why the user does not take this category on `channel` (opted out, default off), or ""."""
        if self.mandatory:
            return ""
        choice = preferences.get((user.pk, channel))
        if choice is not None:
            return "" if choice[0] else Reason.OPTED_OUT
        return "" if self.defaults[channel][0] else Reason.DEFAULT_OFF

    def wants(self, user, channel, preferences):
        """Whether the user takes this notification's category on `channel` (always, when mandatory)."""
        return not self.refusal(user, channel, preferences)

    def unreachable(self, user, channel, with_push, suppressed=frozenset()):
        """(reason, text) when the user cannot receive on `channel`, or ("", "") when they can."""
        if channel == Channel.EMAIL and not user.email:
            return Reason.NO_ADDRESS, "no email address"
        if channel == Channel.SMS and not (user.phone and user.phone_verified_at):
            return Reason.PHONE_NOT_VERIFIED, "no verified phone number"
        if channel == Channel.SMS and user.sms_stopped_at and not self.real_emergency:
            # They replied STOP: only what the law allows still goes, a real emergency alert (a mandatory
            # category, not an exercise or a test).
            return Reason.SMS_STOPPED, f"replied STOP to text messages on {user.sms_stopped_at:%Y-%m-%d %H:%M} UTC"
        if channel == Channel.PUSH and user.pk not in with_push:
            return Reason.NO_PUSH_SUBSCRIPTION, "no push subscription"
        if (user.pk, channel) in suppressed:
            return Reason.SUPPRESSED, f"suppressed: a hard bounce or complaint on this {channel} address"
        return "", ""

    def reachable(self, user, channel, with_push):
        """Why the user cannot receive on `channel`, or "" when they can."""
        return self.unreachable(user, channel, with_push)[1]

    def plan_user(self, user, preferences, with_push, suppressed=frozenset()):
        planned, chosen = [], set()
        quiet_end = None if self.urgent else quiet_hours_end(user, self.now)
        for channel in self.channels:
            if channel == Channel.INBOX and self.inbox_by_set and self.plain(user):
                chosen.add(channel)  # written as a set, with the page's other plain recipients
                continue
            digest = preferences.get((user.pk, channel), self.defaults[channel])[1]
            refusal = self.refusal(user, channel, preferences)
            if refusal and not (channel == Channel.INBOX and self.notification.requires_ack):  # the user's choice, or the category's default: recorded, never sent
                planned.append(self.skipped(user, channel, refusal))
                continue
            reason, text = self.unreachable(user, channel, with_push, suppressed)
            if reason:
                fallback = self.notifier.fallback.get(channel)
                if fallback and fallback not in chosen and fallback not in self.channels \
                        and self.wants(user, fallback, preferences) \
                        and not self.unreachable(user, fallback, with_push, suppressed)[0]:
                    chosen.add(fallback)
                    planned.append(self.delivery(user, fallback, quiet_end))
                planned.append(self.skipped(user, channel, reason, text))
                continue
            if channel in chosen:
                continue
            chosen.add(channel)
            use_digest = (digest and channel == Channel.EMAIL and not self.urgent
                          and self.notification.priority == Priority.LOW)
            planned.append(self.delivery(user, channel, quiet_end, digest_at=next_digest_time(user, self.now)
                                         if use_digest else None))
        if self.notification.requires_ack and Channel.INBOX not in chosen and Channel.INBOX in self.notifier.channels:
            # The inbox holds the acknowledgement, so an alert to acknowledge always lands there.
            planned.append(self.delivery(user, Channel.INBOX, None))
        return planned

    def plan_inactive(self, users):
        """Skipped rows, one per requested channel, for inactive users the audience names explicitly."""
        return [self.skipped(user, channel, Reason.ACCOUNT_INACTIVE) for user in users for channel in self.channels]

    def skipped(self, user, channel, reason, text=""):
        return Delivery(notification=self.notification, recipient=user, channel=channel, status=Delivery.Status.SKIPPED,
                        reason=reason, skip_reason=text, next_attempt_at=self.now)

    def delivery(self, user, channel, quiet_end, digest_at=None):
        when = digest_at or quiet_end or self.now
        reason, text = "", ""
        if digest_at:
            reason, text = Reason.DIGEST, f"held for the daily digest at {digest_at:%Y-%m-%d %H:%M} UTC"
        elif quiet_end:
            reason, text = Reason.QUIET_HOURS, f"held for quiet hours until {quiet_end:%Y-%m-%d %H:%M} UTC"
        return Delivery(notification=self.notification, recipient=user, channel=channel, reason=reason,
                        skip_reason=text, status=Delivery.Status.QUEUED, next_attempt_at=when,
                        digest=digest_at is not None)
