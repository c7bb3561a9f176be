"""Sending: what every door calls to accept a notification (and to preview one).

`notification_send` validates the request, checks the sender may reach the audience, stores
the notification and hands its fan-out to the workers (notifications.engine).
"""

import hashlib
import json
import logging
import re
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Cohort, Role, User
from accounts.roles import is_admin
from accounts.services import api_key_reach
from channels_app.base import Message, Recipient
from channels_app.constants import Category, Channel, Priority
from channels_app.registry import NotificationMeta, get_notifier, notifier_choices

from ..engine.delivery import log_notification
from ..engine.queue import enqueue_fan_out
from ..links import link_url
from ..models import Incident, LedgerEntry, Notification

logger = logging.getLogger(__name__)


# --- sending ------------------------------------------------------------------------------

def audience_check(sender, audience, *, api_key=None):
    """Raise PermissionDenied unless `sender` may reach every part of `audience`.

    Admin reaches anyone; Staff the cohorts they manage (and users in them); a request made
    with an API key reaches what the key reaches now (accounts.services.api_key_reach): its
    cohorts, if it names some, within what its owner may reach at the time of use.
    """
    if sender is None:
        return
    if api_key is not None and api_key.pk:
        allowed = api_key_reach(api_key)
    elif is_admin(sender):
        return
    else:
        allowed = set(sender.managed_cohorts.values_list("code", flat=True))
    if allowed is None:
        return
    if audience.get("everyone") or audience.get("roles"):
        raise PermissionDenied(_("Only an administrator may send to everyone or to a role."))
    refused = set(audience.get("cohorts", [])) - allowed
    if refused:
        raise PermissionDenied(_("You do not manage the cohort(s): %(cohorts)s.")
                               % {"cohorts": ", ".join(sorted(refused))})
    if audience.get("users"):
        # Membership, active or not: an inactive member is skipped at fan-out, not refused here.
        reachable = set(
            Cohort.members.through.objects.filter(cohort__code__in=allowed, user__username__in=audience["users"])
            .values_list("user__username", flat=True)
        )
        outside = set(audience["users"]) - reachable
        if outside:
            raise PermissionDenied(_("These users are not in a cohort you manage: %(users)s.")
                                   % {"users": ", ".join(sorted(outside))})


def clean_audience(audience):
    audience = audience or {}
    unknown = set(audience) - {"users", "cohorts", "roles", "everyone"}
    errors = []
    if unknown:
        errors.append(_("Unknown audience key(s): %(keys)s.") % {"keys": ", ".join(sorted(unknown))})
    cleaned = {
        "users": sorted({str(u) for u in audience.get("users") or []}),
        "cohorts": sorted({str(c) for c in audience.get("cohorts") or []}),
        "roles": sorted({str(r) for r in audience.get("roles") or []}),
        "everyone": bool(audience.get("everyone")),
    }
    if not (cleaned["users"] or cleaned["cohorts"] or cleaned["roles"] or cleaned["everyone"]):
        errors.append(_("The audience is empty: name users, cohorts, roles or everyone."))
    missing = set(cleaned["cohorts"]) - set(Cohort.objects.filter(code__in=cleaned["cohorts"])
                                          .values_list("code", flat=True))
    if missing:
        errors.append(_("Unknown cohort(s): %(cohorts)s.") % {"cohorts": ", ".join(sorted(missing))})
    unknown_users = audience_unknown_users(cleaned["users"])
    if unknown_users:
        more = len(unknown_users) - 20
        shown = ", ".join(unknown_users[:20])
        if more > 0:
            shown = _("%(users)s and %(more)d more") % {"users": shown, "more": more}
        errors.append(_("Unknown user(s): %(users)s.") % {"users": shown})
    bad_roles = set(cleaned["roles"]) - set(Role.values)
    if bad_roles:
        errors.append(_("Unknown role(s): %(roles)s.") % {"roles": ", ".join(sorted(bad_roles))})
    if errors:
        raise ValidationError({"audience": errors})
    return {key: value for key, value in cleaned.items() if value}


def _fingerprint(fields):
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


# Any C0 or C1 control character, DEL, and the Unicode line and paragraph separators: nothing a
# title (an email Subject, an SMS, a push title) may carry. A body may hold tabs and line breaks.
TITLE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
BODY_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


TITLE_MAX_LENGTH = Notification._meta.get_field("title").max_length


def text_problem(value, *, title):
    """Why `value` cannot be a title (title=True) or a body, or "" if it can."""
    match = (TITLE_FORBIDDEN if title else BODY_FORBIDDEN).search(value or "")
    if not match:
        return ""
    what = {"\n": _("a line break"), "\r": _("a carriage return"), "\t": _("a tab"),
            "\x00": _("a NUL character")}.get(match.group()) or (
        _("a control character (U+%(code)s)") % {"code": f"{ord(match.group()):04X}"})
    return (_("A title is one line of text: it contains %(what)s.") % {"what": what} if title
            else _("The body contains %(what)s, which no channel can carry.") % {"what": what})


def translation_languages():
    """The languages a notification may carry a translation in: every language of the site but English."""
    return [code for code, _name in settings.LANGUAGES if code != "en"]


def clean_translations(translations):
    """{language: {"title", "body"}} checked as the English title and body are; errors by `title_<lang>`/`body_<lang>`.

    A language with neither a title nor a body is dropped (its readers get English); one with only
    one of them is refused, so nobody gets a French title over an English body.
    """
    cleaned, errors = {}, {}
    languages = translation_languages()
    if translations and not isinstance(translations, dict):
        raise ValidationError({"translations": [_("Give translations as {language: {title, body}}.")]})
    for language, version in (translations or {}).items():
        if language not in languages:
            errors["translations"] = [_("No translation in %(language)r; the languages are %(languages)s.")
                                      % {"language": language, "languages": ", ".join(languages)}]
            continue
        version = version if isinstance(version, dict) else {}
        title, body = str(version.get("title") or ""), str(version.get("body") or "")
        if not (title.strip() or body.strip()):
            continue
        if not title.strip():
            errors[f"title_{language}"] = [_("A title is required with a translated body.")]
        elif text_problem(title, title=True):
            errors[f"title_{language}"] = [text_problem(title, title=True)]
        if not body.strip():
            errors[f"body_{language}"] = [_("A body is required with a translated title.")]
        elif text_problem(body, title=False):
            errors[f"body_{language}"] = [text_problem(body, title=False)]
        cleaned[language] = {"title": title, "body": body}
    if errors:
        raise ValidationError(errors)
    return cleaned


def audience_unknown_users(usernames):
    """The usernames in `usernames` that belong to nobody (inactive users exist: they are skipped at fan-out)."""
    usernames = list(usernames)
    known = set()
    for start in range(0, len(usernames), 2000):
        known.update(User.objects.filter(username__in=usernames[start:start + 2000])
                     .values_list("username", flat=True))
    return sorted(set(usernames) - known)


def clean_escalation(notifier_cls, *, channels, delay_minutes=None, ladder=None):
    """(delay_minutes or None, ladder list) checked against the limits and the notifier's channels;
    errors by `escalation_delay_minutes` and `escalation_ladder`. Empty means the kind of message's own."""
    errors = {}
    if delay_minutes in ("", None):
        delay_minutes = None
    else:
        try:
            delay_minutes = int(delay_minutes)
        except (TypeError, ValueError):
            delay_minutes = None
            errors["escalation_delay_minutes"] = [_("Give the escalation delay in whole minutes.")]
        low, high = settings.ESCALATION_DELAY_MIN_MINUTES, settings.ESCALATION_DELAY_MAX_MINUTES
        if delay_minutes is not None and not low <= delay_minutes <= high:
            errors["escalation_delay_minutes"] = [
                _("The escalation delay is from %(low)d to %(high)d minutes.") % {"low": low, "high": high}]
    ladder = list(dict.fromkeys(ladder or []))
    outside = [c for c in ladder if c not in channels]
    if outside:
        errors["escalation_ladder"] = [_("The escalation ladder may only use the channels it is sent on "
                                         "(%(channels)s), not %(outside)s.")
                                       % {"channels": ", ".join(channels), "outside": ", ".join(map(str, outside))}]
    if errors:
        raise ValidationError(errors)
    return delay_minutes, ladder


def test_audience():
    """The audience of every Test alert: the test list, the cohort settings.EMERGENCY_TEST_COHORT names."""
    code = settings.EMERGENCY_TEST_COHORT
    if not code:
        raise ValidationError(_("A test alert goes only to the test list, and none is set up: an administrator "
                                "sets EMERGENCY_TEST_COHORT to the code of the test cohort."))
    if not Cohort.objects.filter(code=code).exists():
        raise ValidationError(_("A test alert goes only to the test list, the cohort %(code)s, which does not "
                                "exist.") % {"code": code})
    return {"cohorts": [code]}


def notification_validate(*, notifier, title, body, audience, category=None, priority=Priority.NORMAL,
                          channels=None, data=None, scheduled_for=None, deadline=None, reminder_offsets=None,
                          requires_ack=None, translations=None, alert_status=None, checkin=False,
                          escalation_delay_minutes=None, escalation_ladder=None):
    """Check a notification as sending it would; return its cleaned fields or raise ValidationError.

    The one validation of every door: `notification_send` runs it, and so do the console's
    confirmation step, the API's serializer and `send_batch --dry-run`, so none of them shows or
    accepts what sending (or a worker) would refuse. Every problem is reported, by field:
    notifier, category, priority, channels, title, body, title_fr and body_fr (a translation,
    checked as the English title and body are), data (the notifier's required fields, such as a
    security alert's severity), audience (unknown cohorts, roles and usernames, by name),
    reminder_offsets. Returns a dict with notifier, title, body, translations (the languages
    given), category (defaulted), priority, channels (defaulted, deduplicated), data, audience
    (cleaned), scheduled_for, deadline, reminder_offsets (sorted) and requires_ack (the
    notifier's default applied), alert_status (an exercise or a test only for an emergency alert; a
    test's audience is the test list, whatever was asked), checkin, escalation_delay_minutes and
    escalation_ladder.
    """
    notifier_cls = NotificationMeta.registry.get(notifier)
    if notifier_cls is None:
        raise ValidationError({"notifier": [_("Unknown notifier %(notifier)r; choose one of %(choices)s.") % {
            "notifier": notifier, "choices": ", ".join(key for key, _label in notifier_choices())}]})
    if getattr(notifier_cls, "internal", False):
        raise ValidationError({"notifier": [_("%(kind)s messages are made by FlashNotify, not sent.")
                                            % {"kind": notifier_cls.label}]})
    data = dict(data or {})
    errors = {}
    category = category or (notifier_cls.categories[0] if notifier_cls.categories else None)
    if category not in Category.values:
        errors["category"] = [_("Unknown category %(category)r; choose one of %(choices)s.")
                              % {"category": category, "choices": ", ".join(Category.values)}]
    elif notifier_cls.categories and category not in notifier_cls.categories:
        errors["category"] = [_("%(kind)s notifications cannot be of category %(category)r; choose one of "
                                "%(choices)s.") % {"kind": notifier_cls.label, "category": category,
                                                   "choices": ", ".join(notifier_cls.categories)}]
    if priority not in Priority.values:
        errors["priority"] = [_("Unknown priority %(priority)r; choose one of %(choices)s.")
                              % {"priority": priority, "choices": ", ".join(Priority.values)}]
    channels = list(dict.fromkeys(channels or notifier_cls.channels))
    bad = [c for c in channels if c not in notifier_cls.channels]
    if bad:
        unknown = [c for c in bad if c not in Channel.values]
        params = {"kind": notifier_cls.label, "channels": ", ".join(bad), "unknown": ", ".join(unknown),
                  "choices": ", ".join(notifier_cls.channels)}
        errors["channels"] = [(_("%(kind)s does not send on %(channels)s (%(unknown)s: no such channel); it sends on "
                                 "%(choices)s.") if unknown
                               else _("%(kind)s does not send on %(channels)s; it sends on %(choices)s.")) % params]
    if not (title or "").strip():
        errors["title"] = [_("A title is required.")]
    elif text_problem(title, title=True):
        errors["title"] = [text_problem(title, title=True)]
    elif len(title) > TITLE_MAX_LENGTH:
        errors["title"] = [_("A title is at most %(max)d characters (it has %(length)d).")
                           % {"max": TITLE_MAX_LENGTH, "length": len(title)}]
    if not (body or "").strip():
        errors["body"] = [_("A body is required.")]
    elif text_problem(body, title=False):
        errors["body"] = [text_problem(body, title=False)]
    try:
        translations = clean_translations(translations)
    except ValidationError as exc:
        errors.update(exc.message_dict)
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
        errors["reminder_offsets"] = [_("Give reminder offsets as whole minutes before the deadline.")]
        reminder_offsets = []
    if any(m <= 0 for m in reminder_offsets):
        errors["reminder_offsets"] = [_("Reminder offsets are minutes before the deadline: positive numbers.")]
    if reminder_offsets and not deadline:
        errors["reminder_offsets"] = [_("Reminders need a deadline.")]
    alert_status = alert_status or Notification.AlertStatus.ACTUAL
    if alert_status not in Notification.AlertStatus.values:
        errors["alert_status"] = [_("Unknown alert status %(status)r; choose one of %(choices)s.")
                                  % {"status": alert_status, "choices": ", ".join(Notification.AlertStatus.values)}]
    elif alert_status != Notification.AlertStatus.ACTUAL and notifier != Notification.EMERGENCY_NOTIFIER:
        errors["alert_status"] = [_("Only an emergency alert (security and emergency) can be an exercise or a "
                                    "test.")]
    elif alert_status == Notification.AlertStatus.TEST and "audience" not in errors:
        try:
            audience = test_audience()
        except ValidationError as exc:
            errors["alert_status"] = exc.messages
    if checkin and notifier != Notification.EMERGENCY_NOTIFIER:
        errors["checkin"] = [_("Only an emergency alert can ask for a check-in.")]
    elif checkin and Channel.SMS not in channels:
        errors["checkin"] = [_("A check-in is asked by text message: send the alert on SMS too.")]
    try:
        escalation_delay_minutes, escalation_ladder = clean_escalation(
            notifier_cls, channels=channels, delay_minutes=escalation_delay_minutes, ladder=escalation_ladder)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return dict(notifier=notifier, title=title, body=body, translations=translations, category=category,
                priority=priority, channels=channels, data=data, audience=audience, scheduled_for=scheduled_for,
                deadline=deadline, reminder_offsets=reminder_offsets,
                requires_ack=bool(requires_ack) or getattr(notifier_cls, "requires_ack", False),
                alert_status=alert_status, checkin=bool(checkin), escalation_delay_minutes=escalation_delay_minutes,
                escalation_ladder=escalation_ladder)


def notification_send(*, sender, notifier, title, body, audience, category=None, priority=Priority.NORMAL,
                      channels=None, data=None, scheduled_for=None, deadline=None, reminder_offsets=None,
                      requires_ack=None, translations=None, idempotency_key=None, api_key=None, parent=None,
                      alert_status=None, checkin=False, escalation_delay_minutes=None, escalation_ladder=None,
                      template=None, template_version=None, incident=None, thread_role=""):
    """Accept a notification and hand its fan-out to the workers. Returns (notification, created).

    Validated by `notification_validate` (what every door runs before it shows or accepts
    anything), then the audience by `audience_check`. With an `idempotency_key`, sending the same
    request again returns the first notification (created False); the same key with a different
    request raises IdempotencyConflict.
    """
    cleaned = notification_validate(
        notifier=notifier, title=title, body=body, audience=audience, category=category, priority=priority,
        channels=channels, data=data, scheduled_for=scheduled_for, deadline=deadline,
        reminder_offsets=reminder_offsets, requires_ack=requires_ack, translations=translations,
        alert_status=alert_status, checkin=checkin, escalation_delay_minutes=escalation_delay_minutes,
        escalation_ladder=escalation_ladder)
    audience, reminder_offsets = cleaned["audience"], cleaned["reminder_offsets"]
    send_check(sender, cleaned, api_key=api_key)

    fields = cleaned
    # Without translations (or the emergency fields at their defaults), the fingerprint of a request is what
    # it was before they existed.
    defaults = {"translations": {}, "alert_status": Notification.AlertStatus.ACTUAL, "checkin": False,
                "escalation_delay_minutes": None, "escalation_ladder": []}
    fingerprint = _fingerprint({k: v for k, v in fields.items()
                                if k not in defaults or v != defaults[k]}) if idempotency_key else ""
    if idempotency_key:
        existing = Notification.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return _replay(existing, fingerprint)
    now = timezone.now()
    scheduled = bool(scheduled_for and scheduled_for > now)
    emergency = notifier == Notification.EMERGENCY_NOTIFIER
    awaiting = emergency and needs_approval(sender=sender, template=template, parent=parent, fields=fields)
    status = (Notification.Status.AWAITING_APPROVAL if awaiting
              else Notification.Status.SCHEDULED if scheduled else Notification.Status.QUEUED)
    try:
        with transaction.atomic():
            if emergency and incident is None and parent is None:
                # Every emergency alert opens an incident: its updates and all-clear follow in that thread.
                incident = Incident.objects.create(title=fields["title"], alert_status=fields["alert_status"],
                                                   opened_by=sender)
                thread_role = thread_role or Notification.ThreadRole.ALERT
            notification = Notification.objects.create(
                sender=sender, idempotency_key=idempotency_key, request_fingerprint=fingerprint, parent=parent,
                family_root_id=parent.child_family_root() if parent else None,
                status=status, template=template, template_version=template_version, incident=incident,
                thread_role=thread_role,
                **fields,
            )
            if emergency:
                ledger_record_draft(notification, actor=sender)
            if audience.get("cohorts"):
                notification.cohorts.set(Cohort.objects.filter(code__in=audience["cohorts"]))
            if not awaiting:
                notification_hand_over(notification, actor=sender, now=now)
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            return _replay(Notification.objects.get(idempotency_key=idempotency_key), fingerprint)
        raise
    log_notification(notification, notification.status)
    return notification, True


def notification_hand_over(notification, *, actor=None, now=None):
    """Hand a stored notification (queued or scheduled) to the fan-out: its reminders, the fan-out task
    when it is due now (once the transaction commits), and the ledger's SENT entry of an emergency alert.

    What `notification_send` does at once, and `notification_approve` on approval."""
    now = now or timezone.now()
    if notification.reminder_offsets:
        _schedule_reminders(notification, now=now)
    if notification.status == Notification.Status.QUEUED:
        transaction.on_commit(lambda: enqueue_fan_out(notification.pk))
    LedgerEntry.record(notification, LedgerEntry.Event.SENT, actor=actor, data={
        "status": notification.status,
        "scheduled_for": notification.scheduled_for.isoformat() if notification.scheduled_for else None})


def needs_approval(*, sender, template, parent, fields):
    """Whether an emergency alert waits for a second person (the two-person rule, EMERGENCY_TWO_PERSON_RULE).

    A free-text alert drafted by a person waits. What goes at once: alerts the system makes (no sender),
    alerts from an incident template (its content was approved when it was written), and a resend of an
    approved alert with its content unchanged (notification_resend_unacknowledged).
    """
    if not settings.EMERGENCY_TWO_PERSON_RULE or sender is None or template is not None:
        return False
    if parent is not None and parent.status != Notification.Status.AWAITING_APPROVAL and (
            parent.title, parent.body, parent.translations) == (fields["title"], fields["body"],
                                                                 fields["translations"]):
        return False
    return True


def send_check(sender, cleaned, *, api_key=None):
    """Raise PermissionDenied unless `sender` may send `cleaned` (notification_validate's answer).

    An emergency alert needs the emergency permission (notifications.send_emergency); the audience is
    checked by `audience_check`, except a test alert's: it goes to the institution's test list only.
    """
    if cleaned["notifier"] == Notification.EMERGENCY_NOTIFIER:
        emergency_permission_check(sender)
        if cleaned["alert_status"] == Notification.AlertStatus.TEST:
            return
    audience_check(sender, cleaned["audience"], api_key=api_key)


EMERGENCY_PERMISSION = "notifications.send_emergency"


def emergency_permission_check(user):
    """Raise PermissionDenied unless `user` (None: the system) may send and approve emergency alerts."""
    if user is not None and not user.has_perm(EMERGENCY_PERMISSION):
        raise PermissionDenied(_("Sending or approving an emergency alert needs the emergency permission "
                                 "(the Emergency role)."))


def ledger_record_draft(notification, *, actor):
    """The ledger's first entries of an emergency alert: who drafted it, and its content as sent."""
    LedgerEntry.record(notification, LedgerEntry.Event.DRAFTED, actor=actor, data={
        "alert_status": notification.alert_status, "thread_role": notification.thread_role,
        "audience": notification.audience, "channels": notification.channels, "status": notification.status})
    LedgerEntry.record(notification, LedgerEntry.Event.CONTENT, actor=actor, data={
        "title": notification.title, "body": notification.body, "translations": notification.translations,
        "data": notification.data, "template_id": notification.template_id,
        "template_version": notification.template_version})


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
            title=notification.title, body=notification.body, translations=notification.translations,
            data={**notification.data, "reminder_minutes": minutes},
            channels=notification.channels, audience=notification.audience, sender=notification.sender,
            status=Notification.Status.SCHEDULED, scheduled_for=at, deadline=notification.deadline,
            requires_ack=False, parent=notification, family_root_id=notification.child_family_root(),
        ).cohorts.set(notification.cohorts.all())


# --- preview --------------------------------------------------------------------------------

def notification_preview(notification, recipient, *, context=None):
    """{channel: {part: text}}: `notification` as `recipient` (a User) would get it on each of its channels.

    Renders only — sends nothing, writes nothing — so a draft (an unsaved Notification built
    from a compose form) can be previewed. Acknowledge and unsubscribe links point at a
    placeholder that nobody can use: a live link would act for the recipient.
    """
    notifier = get_notifier(notification.notifier)
    channels = [c for c in (notification.channels or notifier.channels) if c in notifier.channels]
    try:
        person = Recipient.from_user(recipient)
    except ValidationError:  # a stored address that no longer validates: the content is still worth seeing
        person = Recipient(user_id=recipient.pk, username=recipient.username, name=recipient.get_full_name(),
                           language=recipient.language, timezone=recipient.timezone)

    def link(name):
        return link_url(name, user_id=recipient.pk, notification_id=notification.pk, preview=True)

    preview = {}
    for channel in channels:
        message = Message(
            delivery_id=None, channel=channel, recipient=person, notification=notification,
            unsubscribe_url=link("unsubscribe") if channel == Channel.EMAIL else "",
            ack_url=link("acknowledge") if notification.requires_ack else "", context=context,
        )
        preview[channel] = notifier.render(message)
    return preview


