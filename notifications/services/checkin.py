"""Two-way SMS check-in: text messages people send us, recorded and acted on.

They arrive from channels_app's inbound webhook as the `channels_app.signals.sms_received` signal,
connected in NotificationsConfig.ready() to `sms_received`, whose return value is the answer texted back.

- A check-in answer ("1"/"safe", "2"/"need help", anything else) is recorded against the sender's latest
  emergency alert that asked for a check-in and reached them by SMS within the acknowledgement window,
  acknowledges that alert for them as the acknowledge link does (their escalation stops), appends the
  running tally to the alert's ledger, and "need help" alerts the operators on duty.
- STOP, START and HELP (the carriers' keywords, the whole message) turn text messages off and on for the
  sender, or answer who we are. A STOPped person still gets emergency alerts (engine.planning).
- A number nobody has, or an answer that matches no alert, is stored unmatched and changes nothing.
- Replays (Twilio retries a webhook) change nothing: each MessageSid is recorded once.
"""

import logging
import re

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Role, User
from accounts.validators import normalize_phone
from channels_app.constants import Category, Channel, Priority
from channels_app.notifiers import OnDutyNotifier

from ..engine.escalation import ESCALATION_WINDOW
from ..engine.queue import enqueue_fan_out
from ..models import Delivery, LedgerEntry, Notification, SmsReply
from ..selectors import CHECKIN_ANSWERS, inbox_message_for, notification_roll_call
from .inbox import message_acknowledge

logger = logging.getLogger(__name__)
Kind = SmsReply.Kind

# Keywords are the whole message, in any case (CTIA / carrier rules; Twilio's own opt-out words); STOP and START
# also with punctuation around them.
STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
START_WORDS = frozenset({"start", "unstop", "yes"})
HELP_WORDS = frozenset({"help", "info"})
# Check-in answers, English and French. The bare word HELP is a carrier keyword, not a call for help.
SAFE_ANSWERS = frozenset({"1", "safe", "ok", "okay", "i am safe", "i'm safe", "im safe", "1 safe", "safe 1",
                          "en sécurité", "en securite", "sain et sauf", "saine et sauve", "ça va", "ca va"})
NEED_HELP_ANSWERS = frozenset({"2", "need help", "i need help", "help me", "please help", "help please", "sos",
                               "2 need help", "need help 2", "help needed", "besoin d'aide", "j'ai besoin d'aide",
                               "aidez-moi", "aidez moi", "au secours", "à l'aide", "a l'aide"})
PUNCTUATION = re.compile(r"^[\s.!?,;:\"'()*-]+|[\s.!?,;:\"'()*-]+$")
# "1, at home" or "2 - stuck in B12": the number first, then words.
LEADING_ANSWER = re.compile(r"^([12])(?:$|[\s,.;:!)\-]+(?!\d))")


def sms_reply_kind(body):
    """The Kind of a text message: a keyword (STOP, START, HELP) or a check-in answer (SAFE, NEED_HELP, OTHER)."""
    text = " ".join((body or "").replace("\u2019", "'").split()).lower()
    bare = PUNCTUATION.sub("", text)
    # "Stop." and "STOP!" opt out too: an opt-out is honoured however it is typed. Not HELP: "Help!" is a call
    # for help, the bare word the carriers' keyword.
    if bare in STOP_WORDS:
        return Kind.STOP
    if bare in START_WORDS:
        return Kind.START
    if text in HELP_WORDS:
        return Kind.HELP
    text = bare
    if text in SAFE_ANSWERS:
        return Kind.SAFE
    if text in NEED_HELP_ANSWERS or text == "help":  # "Help!" is not the bare keyword: a call for help
        return Kind.NEED_HELP
    leading = LEADING_ANSWER.match(text)
    if leading:
        return Kind.SAFE if leading.group(1) == "1" else Kind.NEED_HELP
    return Kind.OTHER


def sms_sender_number(from_number):
    """`From` in E.164 (normalize_phone), or as received when it is not a phone number (a short code)."""
    try:
        return normalize_phone(from_number) or from_number.strip()
    except ValidationError:
        return (from_number or "").strip()[:32]


def sms_sender(phone):
    """The person with this number: verified numbers first, then active accounts, the oldest first."""
    if not phone:
        return None
    return (User.objects.filter(phone=phone)
            .order_by(F("phone_verified_at").desc(nulls_last=True), "-is_active", "pk").first())


def checkin_alert_for(user, *, now):
    """The latest emergency alert asking for a check-in that was sent to `user` by SMS within the
    acknowledgement window, or None. A resend counts for the alert it resends."""
    delivery = (Delivery.objects.filter(
        recipient=user, channel=Channel.SMS, sent_at__gte=now - ESCALATION_WINDOW,
        notification__checkin=True, notification__notifier=Notification.EMERGENCY_NOTIFIER)
        .select_related("notification__family_root").order_by("-sent_at", "-pk").first())
    if delivery is None:
        return None
    notification = delivery.notification
    root = notification.family_root
    return root if root is not None and root.checkin else notification


def sms_reply_record(*, message_sid, from_number, to_number="", body="", now=None):
    """Record a text message received (Twilio's inbound webhook) and do what it asks. Returns (reply, created).

    The same `message_sid` again returns the first record and changes nothing.
    """
    now = now or timezone.now()
    existing = SmsReply.objects.filter(message_sid=message_sid).select_related("recipient").first()
    if existing is not None:
        logger.info("text message %s received again: already recorded", message_sid, extra={"reply_id": existing.pk})
        return existing, False
    phone = sms_sender_number(from_number)
    kind = sms_reply_kind(body)
    user = sms_sender(phone)
    notification = checkin_alert_for(user, now=now) if user is not None and kind in CHECKIN_ANSWERS else None
    try:
        with transaction.atomic():
            reply = SmsReply.objects.create(
                message_sid=message_sid, from_number=phone, to_number=(to_number or "")[:32], body=body or "",
                kind=kind, notification=notification, recipient=user, received_at=now)
            if user is not None and kind == Kind.STOP:
                sms_stop(user, now=now)
            elif user is not None and kind == Kind.START:
                sms_start(user)
            elif notification is not None:
                checkin_answer_apply(reply, notification, user)
    except IntegrityError:  # the same message at the same moment, through another request
        return SmsReply.objects.select_related("recipient").get(message_sid=message_sid), False
    logger.info("text message %s received: %s, %s", reply.pk, kind,
                f"alert {notification.pk}" if notification else "from user %s" % user.pk if user else "unknown number",
                extra={"reply_id": reply.pk, "notification_id": reply.notification_id, "user_id": reply.recipient_id,
                       "kind": kind, "matched": notification is not None})
    return reply, True


def _history(user, message):
    """Traced where opt-outs are: the log, and the person's admin history (by themself: they texted it)."""
    LogEntry.objects.log_actions(user_id=user.pk, queryset=[user], action_flag=CHANGE, change_message=message,
                                 single_object=True)
    logger.info("user %s: %s", user.pk, message, extra={"user_id": user.pk})


def sms_stop(user, *, now):
    """They replied STOP: no text message goes to them any more but emergency alerts, until START."""
    if user.sms_stopped_at is None:
        user.sms_stopped_at = now
        User.objects.filter(pk=user.pk).update(sms_stopped_at=now)
        _history(user, "Replied STOP to our text messages: none is sent to them but emergency alerts.")


def sms_start(user):
    """They replied START (or UNSTOP, YES): text messages go to them again."""
    if user.sms_stopped_at is not None:
        user.sms_stopped_at = None
        User.objects.filter(pk=user.pk).update(sms_stopped_at=None)
        _history(user, "Replied START to our text messages: they receive text messages again.")


def checkin_answer_apply(reply, notification, user):
    """A matched check-in answer: acknowledge the alert for them, ledger the tally, alert the operators on duty
    when they need help."""
    message = inbox_message_for(user.pk, notification.pk)
    if message is not None:
        message_acknowledge(message)  # exactly as the acknowledge link: the family, and their escalation stops
    else:
        logger.warning("check-in answer %s: no inbox message of notification %s to acknowledge for user %s",
                       reply.pk, notification.pk, user.pk,
                       extra={"reply_id": reply.pk, "notification_id": notification.pk, "user_id": user.pk})
    tally = notification_roll_call(notification, names=False)
    LedgerEntry.record(notification, LedgerEntry.Event.CHECKIN, data={
        "safe": tally["safe"]["count"], "need_help": tally["need_help"]["count"],
        "other": tally["other"]["count"], "no_answer": tally["no_answer"]["count"],
        "reply_id": reply.pk, "answer": reply.kind, "person": user.pk})
    if reply.kind == Kind.NEED_HELP:
        on_duty_alert(reply, notification, user)


def on_duty_alert(reply, notification, user):
    """Alert the operators on duty (role On_Duty) that `user` needs help: on push, SMS, email and inbox,
    mandatory, sent by the system at once through the engine's normal fan-out. Returns the notification."""
    name = user.get_full_name() or user.username
    values = {"name": name, "username": user.username, "phone": user.phone or reply.from_number,
              "alert": notification.title, "answer": reply.body[:160]}
    versions = {}
    for language, _label in settings.LANGUAGES:
        with translation.override(language):
            versions[language] = {
                "title": _("Needs help: %(name)s") % values,
                "body": _("%(name)s (%(username)s, %(phone)s) answered “%(answer)s” to the alert “%(alert)s”: "
                          "they need help. Call them now.") % values,
            }
    english = versions.pop("en")
    alert = Notification.objects.create(
        notifier=OnDutyNotifier.key, category=Category.SECURITY, priority=Priority.URGENT,
        title=english["title"][:200], body=english["body"], translations=versions,
        channels=[Channel.PUSH, Channel.SMS, Channel.EMAIL, Channel.INBOX], audience={"roles": [Role.ON_DUTY]},
        data={"alert": notification.pk, "person": user.pk, "reply": reply.pk}, sender=None,
        status=Notification.Status.QUEUED)
    transaction.on_commit(lambda: enqueue_fan_out(alert.pk))
    logger.warning("user %s needs help (alert %s): operators on duty alerted by notification %s", user.pk,
                   notification.pk, alert.pk,
                   extra={"notification_id": alert.pk, "alert_id": notification.pk, "user_id": user.pk,
                          "reply_id": reply.pk})
    return alert


def sms_reply_answer(reply):
    """What we text back to a message received (the webhook's TwiML), in the sender's language; "" for nothing."""
    user = reply.recipient
    with translation.override(user.language if user is not None else settings.LANGUAGE_CODE):
        if reply.kind == Kind.STOP:
            return _("FlashNotify: you will get no more text messages from us, except emergency alerts. "
                     "Reply START to get them again.")
        if reply.kind == Kind.START:
            return _("FlashNotify: you will get our text messages again. Reply STOP to stop them.")
        if reply.kind == Kind.HELP:
            return _("FlashNotify, the university's notification service (%(site)s). Reply STOP to stop our text "
                     "messages (emergency alerts still reach you), START to get them again. In danger, call the "
                     "emergency services.") % {"site": settings.SITE_URL}
        if reply.notification_id is None:
            return ""
        if reply.kind == Kind.SAFE:
            return _("Thank you: we have recorded that you are safe.")
        if reply.kind == Kind.NEED_HELP:
            return _("We have recorded that you need help and alerted the operators on duty. If you are in "
                     "danger, call the emergency services.")
        return _("Thank you: your answer is recorded. Reply 1 if you are safe, 2 if you need help.")


def sms_received(sender, *, message_sid, from_number, to_number="", body="", **kwargs):
    """Receiver of channels_app.signals.sms_received: record the message, return the answer to text back."""
    reply, _created = sms_reply_record(message_sid=message_sid, from_number=from_number, to_number=to_number,
                                       body=body)
    return sms_reply_answer(reply)
