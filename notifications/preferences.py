"""Writes on a user's preferences."""

from channels_app.constants import MANDATORY_CATEGORIES

from .models import Preference


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
