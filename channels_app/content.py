"""Message content: the registered template sets and the start-up checks on them.

A template set is a directory of Django templates named `<channel>_<part>.<lang>.<ext>`:

    email:  subject (txt), text (txt), html (html)
    sms:    text (txt)
    push:   title (txt), body (txt), link (txt)
    inbox:  title (txt), body (txt)

A notifier renders from the most specific set that has the file: its own set for the
notification's category (notifier + category), a category set, its own set, then the default
set; in each, the recipient's language first and English second, so a missing French file
falls back to English (and the check `channels_app.W010` reports it).

Every template gets this context (Notifier.context):

    recipient        Recipient: name, username, email, phone, language, timezone
    notification     the Notification (title, body, category, priority, deadline, data, ...)
    title, body      the notification's title and body
    data             Notification.data; its keys are also top-level names, e.g.
    course           data["course"] ("" when absent)
    severity, location   (security alerts; severity is required by SecurityNotifier)
    severity_label   the severity's label in the recipient's language ("élevée" for "high"); the code
                     itself when it is not one of channels_app.constants.Severity
    reminder_minutes (deadline reminders: minutes before the deadline)
    deadline         aware datetime or None: show it with {% timezone recipient.timezone %}
    link             data["url"] or the message's page in the inbox
    inbox_url        the message's page in the inbox
    ack_url          signed acknowledgement link ("" unless acknowledgement is required)
    unsubscribe_url  signed one-click unsubscribe link (email only)
    notifier         the notifier instance
    items            (digest emails only) the gathered notifications, oldest first
"""

from django.core.checks import Error, Tags, Warning, register
from django.template import TemplateDoesNotExist
from django.template.loader import get_template

from .base import CHANNEL_PARTS
from .constants import Category
from .registry import NotificationMeta, TemplateMeta


class TemplateSet(metaclass=TemplateMeta):
    """Subclass with `notifier` and/or `category` to register a directory of message templates."""

    abstract = True
    notifier = None
    category = None
    directory = ""  # computed by TemplateMeta when empty: notifications/<notifier>[/<category>], ...
    languages = ("en", "fr")

    @classmethod
    def name(cls, channel, part, language):
        return f"{cls.directory}/{channel}_{part}.{language}.{CHANNEL_PARTS[channel][part]}"


class DefaultTemplates(TemplateSet):
    """Every channel, every part: what any notifier falls back to."""


class AcademicTemplates(TemplateSet):
    notifier = "academic"


class AcademicDeadlineTemplates(TemplateSet):
    notifier = "academic"
    category = Category.DEADLINE


class SecurityTemplates(TemplateSet):
    notifier = "security"


class DigestTemplates(TemplateSet):
    notifier = "digest"


def _exists(name):
    try:
        get_template(name)
    except TemplateDoesNotExist:
        return False
    return True


def template_problems():
    """(errors, warnings) as lists of (message, hint) — used by the system checks below."""
    errors, warnings = [], []
    for key, notifier in sorted(NotificationMeta.registry.items()):
        instance = notifier()
        for channel in notifier.channels:
            for category in (notifier.categories or (None,)):
                for part, extension in CHANNEL_PARTS[channel].items():
                    names = instance.template_names(channel, part, "en", extension, category)
                    if not any(_exists(name) for name in names if name.endswith(f".en.{extension}")):
                        errors.append((f"Notifier {key!r} has no {channel} {part} template"
                                       f"{f' for category {category}' if category else ''}.",
                                       f"Add {names[-1]} (or a more specific one)."))
    for (notifier_key, category), template_set in sorted(TemplateMeta.registry.items(), key=lambda i: str(i[0])):
        for channel, parts in CHANNEL_PARTS.items():
            for part in parts:
                present = {lang for lang in template_set.languages if _exists(template_set.name(channel, part, lang))}
                if present and "en" not in present:
                    errors.append((f"{template_set.name(channel, part, sorted(present)[0])} has no English version.",
                                   f"Add {template_set.name(channel, part, 'en')}: English is the fallback."))
                for lang in template_set.languages:
                    if present and lang not in present:
                        warnings.append((f"{template_set.name(channel, part, lang)} is missing: "
                                         f"recipients whose language is {lang!r} get the English version.",
                                         f"Translate {template_set.name(channel, part, 'en')}."))
    return errors, warnings


@register(Tags.templates)
def check_message_templates(app_configs, **kwargs):
    """Every notifier renders every part of every channel it uses; translations are complete."""
    errors, warnings = template_problems()
    return ([Error(message, hint=hint, id="channels_app.E010") for message, hint in errors]
            + [Warning(message, hint=hint, id="channels_app.W010") for message, hint in warnings])
