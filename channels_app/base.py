"""The base Notifier and the plain objects it works on.

A notifier owns one fixed delivery sequence — group by channel, render each message, send
the batch through the channel's step, return one Outcome per message — and its channel
mixins supply only the send step for their channel (the method marked `@send_step`,
wrapped by the config, breaker and timing decorators). The engine (notifications.engine)
records the returned outcomes on the deliveries.
"""

import functools
import logging
import re
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.template import Context, Engine, Library, defaultfilters, defaulttags, loader_tags
from django.template.loader import select_template
from django.utils import timezone, translation
from django.utils.html import conditional_escape
from django.utils.translation import gettext_lazy

from .constants import severity_label
from .errors import outcome_for_error
from .fields import Email, Phone, Priority
from .outcomes import Outcome, StopSending
from .registry import NotificationMeta, TemplateMeta

__all__ = ["Message", "Notifier", "Outcome", "Recipient", "StopSending", "checkin_prompt", "personalise"]

logger = logging.getLogger(__name__)


class Recipient:
    """Who a message goes to, with addresses validated by descriptors."""

    email = Email()
    phone = Phone()

    def __init__(self, *, user_id, username="", name="", email="", phone="", language="en",
                 timezone="UTC", push_subscriptions=()):
        self.user_id = user_id
        self.username = username
        self.name = name or username
        self.email = email
        self.phone = phone
        self.language = language or "en"
        self.timezone = timezone
        self.push_subscriptions = list(push_subscriptions)

    @classmethod
    def from_user(cls, user, push_subscriptions=(), *, channel=None):
        """The recipient of a user; given a `channel`, only that channel's address is validated and kept."""
        email = user.email if channel in (None, "email") else ""
        phone = user.phone if user.phone_verified_at and channel in (None, "sms") else ""
        return cls(user_id=user.pk, username=user.username, name=user.get_full_name(), email=email, phone=phone,
                   language=user.language, timezone=user.timezone, push_subscriptions=push_subscriptions)


class Message:
    """One delivery to send: a recipient, a channel, and (after render) its content."""

    priority = Priority()

    def __init__(self, *, delivery_id, channel, recipient, notification, message_id="", attempt=1,
                 unsubscribe_url="", ack_url="", context=None):
        self.delivery_id = delivery_id
        self.channel = channel
        self.recipient = recipient
        self.notification = notification
        self.priority = notification.priority
        self.message_id = message_id
        self.attempt = attempt
        self.unsubscribe_url = unsubscribe_url
        self.ack_url = ack_url
        self.context = context or {}  # per-recipient template context (a personalised batch)
        self.content = {}
        self.shape = None  # the SharedParts its content was filled from, if any


# What a personalised (batch) title or body may use: every default filter, and the default tags that only shape the
# row's own values. Refused: {% load %} (any tag library: the admin's log, static, i18n...),
# {% include %}, {% extends %} and {% block %} (other templates), {% debug %} (the whole context),
# {% url %}, {% csrf_token %} and {% querystring %} (a request a worker does not have).
BATCH_TAGS = ("autoescape", "comment", "cycle", "filter", "firstof", "for", "if", "ifchanged", "lorem", "now",
              "regroup", "resetcycle", "spaceless", "templatetag", "verbatim", "widthratio", "with")
REFUSED_TAGS = sorted((set(defaulttags.register.tags) | set(loader_tags.register.tags)) - set(BATCH_TAGS))


@functools.cache
def batch_template_engine():
    """A template engine for batch titles and bodies: BATCH_TAGS and the default filters, no tag
    library to load and no template to read."""
    library = Library()
    library.filters.update(defaultfilters.register.filters)
    library.tags.update({name: defaulttags.register.tags[name] for name in BATCH_TAGS})
    engine = Engine(libraries={}, loaders=[])
    engine.template_builtins = [library]
    return engine


def personalise(notification, message, title, body):
    """Render `title` and `body` (the recipient's version) as templates over the recipient's context.

    Compiled once per notification and version (cached on it), so a batch of thousands compiles two
    templates per language.
    """
    cache = notification.__dict__.setdefault("_personal_templates", {})
    compiled = cache.get((title, body))
    if compiled is None:
        engine = batch_template_engine()
        compiled = cache[(title, body)] = (engine.from_string(title), engine.from_string(body))
    context = Context({**notification.data, **message.context, "recipient": message.recipient}, autoescape=False)
    return compiled[0].render(context).strip(), compiled[1].render(context).strip()


# What an alert asking for a check-in (Notification.checkin) adds, by channel: (part, separator, text).
CHECKIN_PROMPTS = {
    "sms": ("text", " ", gettext_lazy("Reply 1 if you are safe, 2 if you need help.")),
    "inbox": ("body", "\n\n", gettext_lazy("Reply to the text message (1 if you are safe, 2 if you need help), "
                                          "or acknowledge.")),
}


def checkin_prompt(notification, channel, language):
    """The check-in question `channel` appends for an alert that asks for one, in `language`; "" otherwise."""
    if not getattr(notification, "checkin", False) or channel not in CHECKIN_PROMPTS:
        return ""
    with translation.override(language):
        return str(CHECKIN_PROMPTS[channel][2])


# What each channel renders: part name -> template file extension.
CHANNEL_PARTS = {
    "email": {"subject": "txt", "text": "txt", "html": "html"},
    "sms": {"text": "txt"},
    "push": {"title": "txt", "body": "txt", "link": "txt"},
    "inbox": {"title": "txt", "body": "txt"},
}


class Notifier(metaclass=NotificationMeta):
    """Base of every notifier. Subclass it with channel mixins and a `key`.

    Class attributes a notifier may declare:
    - `key`, `label`: registry key and human name;
    - `categories`: the categories it sends (the first is its default);
    - `required_fields`: names that `Notification.data` must carry (validated by `validate_data`);
    - `fallback`: channel -> channel to use when the recipient cannot receive on the first;
    - `escalation`: channels to try in turn for a recipient who has not acknowledged;
    - `escalation_delay`: how long to wait for an acknowledgement before escalating.
    """

    abstract = True
    key = None
    label = ""
    categories = ()
    required_fields = ()
    fallback = {}
    escalation = ()
    escalation_delay = timedelta(minutes=15)
    channels = ()  # set by NotificationMeta from the channel mixins
    steps = {}  # channel -> send step, set by NotificationMeta (and wrapped by track_performance)

    # --- the fixed sequence -------------------------------------------------------------
    def deliver(self, messages, *, now=None, on_outcome=None):
        """Render and send `messages` (any channels), returning one Outcome per message.

        Each outcome is handed to `on_outcome` as soon as it is known, so the caller records
        as the batch goes; `on_outcome` may raise `StopSending` to take no more messages (a
        cancel, the task's time budget), and the outcomes reported until then are returned.
        Whatever one message raises fails that message alone (`outcome_for_error`); a step
        that breaks as a whole fails the messages it had not reported, with the reason.

        `now` is the engine's clock for this batch (the circuit breaker reads it, the rate
        limiter reads `clock()`), so a test or a sweep can run the sequence at a chosen moment.
        """
        self.now = now or timezone.now()
        self._chosen_now = now is not None
        outcomes = []

        def report(outcome):
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

        by_channel = {}
        for message in messages:
            by_channel.setdefault(message.channel, []).append(message)
        try:
            for channel, batch in by_channel.items():
                if channel not in self.channels:
                    for message in batch:
                        report(Outcome.permanent_failure(message, f"{self.key} does not send on {channel}"))
                    continue
                ready = []
                for message, error in self.render_batch(batch):
                    if error is not None:  # one message's template or data: that message alone
                        report(outcome_for_error(message, error, during="render"))
                    else:
                        ready.append(message)
                if ready:
                    self._send(channel, ready, report)
        except StopSending:
            pass
        return outcomes

    def _send(self, channel, messages, report):
        """Run the channel's step over `messages`, reporting each outcome as it is yielded."""
        steps = iter(self.steps[channel](self, messages))
        reported = set()

        def report_late():
            # Outcomes of messages in flight when the step stopped (channels_app.sessions): sent, so recorded.
            for outcome in self.__dict__.pop("late_outcomes", ()):
                if outcome.delivery_id not in reported:
                    reported.add(outcome.delivery_id)
                    try:
                        report(outcome)
                    except StopSending:
                        pass  # already stopping
        try:
            while True:
                try:
                    outcome = next(steps)
                except StopIteration:
                    return
                except Exception as exc:  # the step broke as a whole: what it had not reported fails
                    logger.exception("%s step of %s broke", channel, self.key,
                                     extra={"channel": channel, "notification_id": messages[0].notification.pk})
                    report_late()
                    for message in messages:
                        if message.delivery_id not in reported:
                            report(outcome_for_error(message, exc))
                    return
                reported.add(outcome.delivery_id)
                report(outcome)
        finally:
            close = getattr(steps, "close", None)
            if close:
                close()
            report_late()

    def clock(self):
        """Seconds since the epoch for the rate limiter: the `now` a caller chose (a test, a sweep),
        else the real time, which goes on while the batch is sent."""
        if self.__dict__.get("_chosen_now"):
            return self.now.timestamp()
        return time.time()

    # --- hooks --------------------------------------------------------------------------
    def template_names(self, channel, part, language, extension, category=None):
        """Candidate templates, most specific set first (see TemplateMeta.sets_for), each in the
        recipient's language and then in English: a missing translation falls back to English."""
        names = []
        for template_set in TemplateMeta.sets_for(self.key, category):
            for lang in dict.fromkeys([language, "en"]):
                names.append(f"{template_set.directory}/{channel}_{part}.{lang}.{extension}")
        return names

    def context(self, message):
        """The context of every message template (documented in channels_app/content.py)."""
        notification = message.notification
        title, body = notification.content_for(message.recipient.language)
        if message.context:
            title, body = personalise(notification, message, title, body)
        inbox_url = f"{settings.SITE_URL}/inbox/" + (f"{notification.pk}/" if notification.pk else "")
        return {
            **notification.data,
            "course": notification.data.get("course", ""),
            "inbox_url": inbox_url,
            "link": notification.data.get("url") or inbox_url,
            **message.context,
            "recipient": message.recipient,
            "notification": notification,
            "data": notification.data,
            "severity_label": severity_label(notification.data.get("severity")),
            "title": title,
            "body": body,
            "deadline": notification.deadline,
            "unsubscribe_url": message.unsubscribe_url,
            "ack_url": message.ack_url,
            "notifier": self,
        }

    def template(self, channel, part, language, extension, category=None):
        """The template for one part, looked up once per notifier instance (one batch), not per message."""
        cache = self.__dict__.setdefault("_templates", {})
        key = (channel, part, language, category)
        if key not in cache:
            cache[key] = select_template(self.template_names(channel, part, language, extension, category))
        return cache[key]

    def render(self, message):
        """{part: text} of the message on its channel, in the recipient's language."""
        notification = message.notification
        context = self.context(message)
        language = message.recipient.language
        with translation.override(language):
            parts = {
                part: self.template(message.channel, part, language, extension,
                                    getattr(notification, "category", None)).render(context).strip()
                for part, extension in CHANNEL_PARTS[message.channel].items()
            }
        prompt = checkin_prompt(notification, message.channel, language)
        if prompt:
            part, separator, _text = CHECKIN_PROMPTS[message.channel]
            parts[part] = f"{parts[part]}{separator}{prompt}"
        return parts

    def shared_content(self, notification, channel, *, language, timezone, present=()):
        """{part: text} that every recipient of `language` and `timezone` gets on `channel`, or None.

        For a fan-out written as a set (no message built per recipient): `present` names the per-recipient
        values (SharedParts.FIELDS and LINKS) that every recipient has, the others being empty for all.
        The parts are rendered twice, with two different stand-ins for those values; they are everyone's
        only when both renderings are the same and neither shows a stand-in, that is when the templates
        print no per-recipient value nor turn on one. Otherwise (None) each message is rendered as usual.
        """
        names = SharedParts.FIELDS + SharedParts.LINKS
        parts = []
        for accent in ("a", chr(0xe9)):
            values = [SharedParts.placeholder(i, accent) if name in present else "" for i, name in enumerate(names)]
            recipient = _StandIn(Recipient(user_id=0, language=language, timezone=timezone),
                                 dict(zip(SharedParts.FIELDS, values)))
            model = Message(delivery_id=None, channel=channel, recipient=recipient, notification=notification,
                            **dict(zip(SharedParts.LINKS, values[len(SharedParts.FIELDS):])))
            parts.append(self.render(model))
        if parts[0] != parts[1] or any(SharedParts.MARK in text for text in parts[0].values()):
            return None
        return parts[0]

    def render_batch(self, messages):
        """Render `messages`, yielding (message, None) once its `content` is set or (message, error).

        What recipients share is rendered once per group — same channel, language, time zone and
        the same set of empty per-recipient values (see `SharedParts`) — and only what differs
        is substituted for each message; a personalised message, or a group whose templates
        transform a per-recipient value (a filter on the name...), is rendered whole.
        """
        shared = {}
        for message in messages:
            try:
                if message.context:
                    message.content, message.shape = self.render(message), None
                else:
                    key = SharedParts.key(message)
                    if key not in shared:
                        shared[key] = SharedParts.build(self, message)
                    message.content, message.shape = shared[key].content(message), shared[key]
                    if message.shape is None:
                        message.content = self.render(message)
            except Exception as exc:
                yield message, exc
            else:
                yield message, None


class _StandIn:
    """A recipient whose per-recipient values are placeholders (see SharedParts)."""

    def __init__(self, recipient, values):
        self.__dict__.update(values)
        self.language, self.timezone, self.push_subscriptions = recipient.language, recipient.timezone, ()

    def __str__(self):
        return self.name


class SharedParts:
    """The parts of one channel's messages rendered once, with a placeholder for each per-recipient value.

    Each placeholder carries an `&`, so the text shows where a template escaped it (`&amp;`, as in an
    HTML part) and where it did not; a message's content is the text with each placeholder replaced by
    its own value, escaped where the placeholder was. A group is built from its first message, which is
    also rendered whole: a template that did more with a value than print it (a filter, a comparison)
    makes the two differ, and then every message of the group is rendered whole (`content()` gives None).
    """

    FIELDS = ("name", "username", "email", "phone", "user_id")  # the recipient's
    LINKS = ("unsubscribe_url", "ack_url")  # the message's
    MARK = "FNph" + secrets.token_hex(4)
    PLACEHOLDER = re.compile(MARK + r"(\d+)(\u00e9?)(&amp;|&)" + MARK)

    def __init__(self, notifier, channel, parts):
        self.notifier, self.channel = notifier, channel
        self.parts = parts  # {part: text with placeholders}, None when the group renders whole
        self.pieces = {part: self.PLACEHOLDER.split(text) for part, text in (parts or {}).items()}

    @classmethod
    def values(cls, message):
        recipient = message.recipient
        return ([str(getattr(recipient, field) or "") for field in cls.FIELDS]
                + [getattr(message, link) or "" for link in cls.LINKS])

    @classmethod
    def key(cls, message):
        """Messages that render alike: the same notification (a digest's are each their own), channel,
        language and time zone, and the same values empty or not (an `{% if ack_url %}` goes the same
        way), all-ASCII or not (an email's transfer encoding)."""
        values = cls.values(message)
        notification = message.notification
        return (getattr(notification, "pk", None) or id(notification),
                message.channel, message.recipient.language, message.recipient.timezone, message.priority,
                tuple(bool(v) for v in values), tuple(v.isascii() for v in values))

    @classmethod
    def placeholder(cls, index, value):
        return f"{cls.MARK}{index}{'' if value.isascii() else chr(0xe9)}&{cls.MARK}"

    @classmethod
    def build(cls, notifier, message):
        values = cls.values(message)
        stand_ins = [cls.placeholder(i, v) if v else "" for i, v in enumerate(values)]
        recipient = _StandIn(message.recipient, dict(zip(cls.FIELDS, stand_ins)))
        model = Message(delivery_id=message.delivery_id, channel=message.channel, recipient=recipient,
                        notification=message.notification, message_id=message.message_id, attempt=message.attempt,
                        **dict(zip(cls.LINKS, stand_ins[len(cls.FIELDS):])))
        shared = cls(notifier, message.channel, notifier.render(model))
        if shared.content(message) != notifier.render(message):
            logger.debug("%s %s templates use a per-recipient value: rendered per message", notifier.key,
                         message.channel, extra={"notification_id": message.notification.pk})
            shared.parts, shared.pieces = None, {}
        return shared

    def content(self, message):
        """{part: text} of `message`, or None when this group renders whole."""
        if self.parts is None:
            return None
        values = self.values(message)
        return {part: self.fill(pieces, values) for part, pieces in self.pieces.items()}

    @staticmethod
    def fill(pieces, values, escape=conditional_escape):
        """Join the text split by PLACEHOLDER (text, index, accent, escape mark, text, ...) with the values."""
        out = [pieces[0]]
        for i in range(1, len(pieces), 4):
            value = values[int(pieces[i])]
            out.append(str(escape(value)) if pieces[i + 2] == "&amp;" else value)
            out.append(pieces[i + 3])
        return "".join(out).strip()
