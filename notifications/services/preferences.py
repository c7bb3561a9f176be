"""A user's notification preferences: the grid the pages and the API show, and saving changes to it.

A user's choice is a Preference row (category × channel); where there is none, the
category's default applies (CategoryDefault, set by an administrator, or the built-in
defaults in planning.BUILTIN_DEFAULTS). The daily digest is a per-category choice, stored
on the email row. Mandatory categories (security) cannot be turned off and ignore quiet hours.
"""

from django.core.exceptions import ValidationError
from django.db import transaction

from channels_app.constants import MANDATORY_CATEGORIES, Category, Channel

from ..engine.planning import all_category_defaults
from ..models import Preference

MANDATORY_NOTICE = ("Security and emergency alerts always reach you on every channel you can receive, "
                    "even during quiet hours, whatever you choose here.")
USER_SETTINGS = ("timezone", "quiet_hours_start", "quiet_hours_end", "digest_hour", "language")


def preference_set(*, user_id, category, channel, enabled, digest=None):
    """Turn a category on or off on a channel for a user. Mandatory categories cannot be turned off."""
    if category in MANDATORY_CATEGORIES and not enabled:
        return None
    defaults = {"enabled": enabled}
    if digest is not None:
        defaults["digest"] = digest
    preference, _ = Preference.objects.update_or_create(user_id=user_id, category=category, channel=channel,
                                                        defaults=defaults)
    return preference


def preference_grid(user):
    """The user's full grid, defaults filled in (two queries).

    Returns {"categories": [{"category", "label", "mandatory", "digest", "digest_default",
    "channels": {channel: {"enabled", "default", "chosen"}}}], "settings": {...}, "notice": str}.
    `chosen` tells an explicit choice from a default; in a mandatory category every channel is on.
    """
    defaults = all_category_defaults()
    chosen = {(p.category, p.channel): p for p in Preference.objects.filter(user=user)}
    categories = []
    for category, label in Category.choices:
        mandatory = category in MANDATORY_CATEGORIES
        channels = {}
        for channel in Channel.values:
            default = defaults[category][channel][0]
            preference = chosen.get((category, channel))
            channels[channel] = {
                "enabled": True if mandatory else (preference.enabled if preference else default),
                "default": default,
                "chosen": preference is not None,
            }
        email = chosen.get((category, Channel.EMAIL))
        digest_default = defaults[category][Channel.EMAIL][1]
        categories.append({
            "category": category, "label": str(label), "mandatory": mandatory,
            "digest": False if mandatory else (email.digest if email else digest_default),
            "digest_default": digest_default, "channels": channels,
        })
    return {
        "categories": categories,
        "settings": {name: getattr(user, name) for name in USER_SETTINGS},
        "notice": MANDATORY_NOTICE,
    }


def preferences_save(user, *, channels=None, digests=None, settings=None):
    """Apply changes to a user's preferences and settings; return the list of what changed.

    - `channels`: {category: {channel: bool}};
    - `digests`: {category: bool} (low-priority email of that category gathered daily);
    - `settings`: any of timezone, quiet_hours_start, quiet_hours_end, digest_hour, language.

    Everything is validated first: on any error a ValidationError names every problem and
    nothing is saved. Each change is {"category", "channel", "field", "old", "new"} (category
    and channel are None for a user setting). Values equal to the current ones are not changes.
    """
    channels, digests, settings = channels or {}, digests or {}, settings or {}
    errors = {}
    for category, row in channels.items():
        if category not in Category.values:
            errors.setdefault("channels", []).append(f"Unknown category {category!r}.")
            continue
        for channel, enabled in row.items():
            if channel not in Channel.values:
                errors.setdefault("channels", []).append(f"Unknown channel {channel!r}.")
            elif not isinstance(enabled, bool):
                errors.setdefault("channels", []).append(f"{category}/{channel}: say true or false.")
            elif category in MANDATORY_CATEGORIES and not enabled:
                errors.setdefault("channels", []).append(
                    f"{Category(category).label} messages cannot be turned off: {MANDATORY_NOTICE}")
    for category, digest in digests.items():
        if category not in Category.values:
            errors.setdefault("digests", []).append(f"Unknown category {category!r}.")
        elif not isinstance(digest, bool):
            errors.setdefault("digests", []).append(f"{category}: say true or false.")
        elif category in MANDATORY_CATEGORIES and digest:
            errors.setdefault("digests", []).append(f"{Category(category).label} messages are never held for a digest.")
    unknown = set(settings) - set(USER_SETTINGS)
    if unknown:
        errors["settings"] = [f"Unknown setting(s): {', '.join(sorted(unknown))}."]
    old_settings = {name: getattr(user, name) for name in USER_SETTINGS}
    if settings and not unknown:
        for name, value in settings.items():
            setattr(user, name, value)
        try:
            user.full_clean(validate_unique=False, validate_constraints=False,
                            exclude=[f.name for f in user._meta.fields if f.name not in settings])
        except ValidationError as exc:
            errors.update(exc.message_dict)
        if (user.quiet_hours_start is None) != (user.quiet_hours_end is None):
            errors.setdefault("quiet_hours_end", []).append(
                "Give both the start and the end of quiet hours, or neither.")
    if errors:
        for name, value in old_settings.items():
            setattr(user, name, value)
        raise ValidationError(errors)

    defaults = all_category_defaults()
    existing = {(p.category, p.channel): p for p in Preference.objects.filter(user=user)}
    changes, to_create, to_update = [], {}, {}

    def row(category, channel):
        key = (category, channel)
        if key in existing:
            return existing[key], False
        if key not in to_create:
            enabled, digest = defaults[category][channel]
            to_create[key] = Preference(user=user, category=category, channel=channel, enabled=enabled, digest=digest)
        return to_create[key], True

    for category, row_changes in channels.items():
        for channel, enabled in row_changes.items():
            preference, new = row(category, channel)
            current = True if category in MANDATORY_CATEGORIES else preference.enabled
            if current != enabled:
                changes.append({"category": category, "channel": channel, "field": "enabled",
                                "old": current, "new": enabled})
            elif not new:
                continue
            preference.enabled = enabled
            if not new:
                to_update[(category, channel)] = preference
    for category, digest in digests.items():
        preference, new = row(category, Channel.EMAIL)
        if preference.digest != digest:
            changes.append({"category": category, "channel": Channel.EMAIL.value, "field": "digest",
                            "old": preference.digest, "new": digest})
            preference.digest = digest
            if not new:
                to_update[(category, Channel.EMAIL)] = preference
    for name in settings:
        if old_settings[name] != getattr(user, name):
            changes.append({"category": None, "channel": None, "field": name,
                            "old": old_settings[name], "new": getattr(user, name)})

    with transaction.atomic():
        if to_create:
            Preference.objects.bulk_create(to_create.values())
        if to_update:
            Preference.objects.bulk_update(to_update.values(), ["enabled", "digest"])
        if settings:
            user.save(update_fields=list(settings))
    return changes
