"""The estimate before sending an alert: how many people per channel, how long to hand it all to the providers,
and what the SMS will cost.

Counts are the engine's planner's (`notification_plan_counts`, as the console's confirmation counts).
Time per channel is its recipients over its provider's rate: the rate limit the workers keep
(EMAIL_RATE_LIMIT, SMS_RATE_LIMIT, PUSH_RATE_LIMIT, read as channels_app.ratelimit reads them) or,
without one, the channel's throughput in ALERT_ESTIMATE_RATES. Channels go out in parallel: the total
is the slowest channel's. The SMS cost is the segments of the SMS as it will be sent (rendered by the
notifier, with any exercise label and check-in prompt, counted as the console's SMS counter counts,
cut at SMS_MAX_SEGMENTS) × its recipients × SMS_PRICE_PER_SEGMENT, per language version.
Escalations (later rungs for those who do not acknowledge) are not counted.
"""

import copy
import math

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

from channels_app.constants import Channel
from channels_app.mixins import sms_count
from channels_app.ratelimit import RATE_LIMIT_SETTINGS, configured_rate

from ..engine.audience import audience_users
from ..models import Notification
from ..selectors import notification_plan_counts
from .sending import notification_preview, notification_validate, send_check

ESTIMATE_RATES_SETTING = "ALERT_ESTIMATE_RATES"
DEFAULT_ESTIMATE_RATES = {"email": 500.0, "sms": 100.0, "push": 500.0, "inbox": 5000.0}
# notification_send's arguments that say how to store a send, not what it sends.
SEND_ONLY = ("idempotency_key", "parent", "template", "template_version", "incident", "thread_role")


def estimate_rates_parse(raw):
    """{channel: messages per second} from "email=500,sms=100,…"; ImproperlyConfigured when it is not that."""
    rates = {}
    for part in str(raw or "").split(","):
        if not part.strip():
            continue
        channel, equals, value = part.partition("=")
        channel = channel.strip()
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not equals or channel not in Channel.values or not math.isfinite(rate) or rate <= 0:
            raise ImproperlyConfigured(
                f"{ESTIMATE_RATES_SETTING}={raw!r}: {part.strip()!r} is not channel=messages per second "
                f"(channels {', '.join(Channel.values)}, rates above 0).")
        rates[channel] = rate
    return rates


def channel_rate(channel):
    """(messages per second, the setting it comes from) that the estimate uses for `channel`."""
    setting = RATE_LIMIT_SETTINGS.get(channel)
    if setting:
        rate = configured_rate(setting)
        if rate > 0:
            return rate, setting
    rates = {**DEFAULT_ESTIMATE_RATES, **estimate_rates_parse(getattr(settings, ESTIMATE_RATES_SETTING, ""))}
    return rates[channel], ESTIMATE_RATES_SETTING


def alert_estimate(*, sender=None, api_key=None, **fields):
    """The estimate of sending a notification: takes `notification_send`'s fields, validated as it validates them.

    Raises ValidationError by field as the send would, and PermissionDenied when `sender` may not reach
    the audience. Returns what `draft_estimate` returns.
    """
    fields = {name: value for name, value in fields.items() if name not in SEND_ONLY}
    cleaned = notification_validate(**fields)
    send_check(sender, cleaned, api_key=api_key)
    model_fields = {field.name for field in Notification._meta.concrete_fields}
    draft = Notification(**{name: value for name, value in cleaned.items() if name in model_fields})
    return draft_estimate(draft, audience_users(cleaned["audience"]), fallback_sample=sender)


def draft_estimate(draft, recipients, *, fallback_sample=None):
    """The estimate of sending `draft` (a Notification, saved or not) to `recipients` (a User queryset).

    {"people", "channels": [{"channel", "label", "recipients", "rate", "rate_source", "seconds"}],
     "seconds" (the slowest channel), "target_minutes", "over_target", "warning",
     "sms": {"recipients", "segments" (the longest version's), "versions": [{"language", "recipients",
     "segments", "characters", "encoding"}], "price_per_segment", "currency", "cost"}}.
    """
    languages = [language for language in (draft.translations or {}) if language != "en"]
    groups = [("en", recipients.exclude(language__in=languages))]
    groups += [(language, recipients.filter(language=language)) for language in languages]
    people, received, versions = 0, {}, []
    for language, group in groups:
        plan = notification_plan_counts(draft, group)
        people += plan["people"]
        for channel, row in plan["channels"].items():
            received[channel] = received.get(channel, 0) + row["send"] + row["digest"]
        sms_people = sum(row["send"] + row["digest"] for channel, row in plan["channels"].items()
                         if channel == Channel.SMS)
        if sms_people:
            versions.append({"language": language, "recipients": sms_people,
                             **sms_version(draft, group, language, fallback_sample)})

    labels = dict(Channel.choices)
    channels = list(dict.fromkeys([*(draft.channels or []), *sorted(received)]))
    rows = []
    for channel in channels:
        rate, source = channel_rate(channel)
        count = received.get(channel, 0)
        rows.append({"channel": channel, "label": str(labels.get(channel, channel)), "recipients": count,
                     "rate": rate, "rate_source": source, "seconds": round(count / rate, 1)})
    seconds = max((row["seconds"] for row in rows), default=0.0)
    target = settings.ALERT_TARGET_MINUTES
    over = seconds > target * 60
    price = settings.SMS_PRICE_PER_SEGMENT
    cost = sum(version["segments"] * version["recipients"] * price for version in versions)
    return {
        "people": people, "channels": rows, "seconds": seconds, "target_minutes": target, "over_target": over,
        "warning": (_("Handing everything to the providers would take about %(time)s, longer than the target of "
                      "%(target)d minutes.") % {"time": duration_text(seconds), "target": target}) if over else "",
        "sms": {"recipients": sum(version["recipients"] for version in versions),
                "segments": max((version["segments"] for version in versions), default=0),
                "versions": versions, "price_per_segment": price, "currency": settings.SMS_PRICE_CURRENCY,
                "cost": round(cost, 4)},
    }


def sms_version(draft, group, language, fallback_sample):
    """{"segments", "characters", "encoding"} of the SMS of `draft` in `language`, rendered as the notifier will
    (for a person of `group`), cut at SMS_MAX_SEGMENTS as the SMS channel cuts it."""
    sample = group.order_by("pk").first() or fallback_sample
    sample = copy.copy(sample)
    sample.language = language  # in memory only
    text = notification_preview(draft, sample).get(Channel.SMS, {}).get("text", "")
    counted = sms_count(text)
    return {"segments": min(counted["segments"], settings.SMS_MAX_SEGMENTS), "characters": counted["characters"],
            "encoding": counted["encoding"]}


def duration_text(seconds):
    """About how long `seconds` is, as a person reads it: "45 s", "3 min 20 s", "1 h 5 min"."""
    seconds = int(math.ceil(seconds))
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return _("%(m)d min %(s)d s") % {"m": minutes, "s": rest} if rest else _("%(m)d min") % {"m": minutes}
    hours, minutes = divmod(minutes, 60)
    return _("%(h)d h %(m)d min") % {"h": hours, "m": minutes}
