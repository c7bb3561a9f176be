import functools
import zoneinfo

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from channels_app.fields import normalize_phone  # the channels own what a valid address is

__all__ = ["normalize_phone", "validate_phone", "validate_timezone", "known_timezones"]


def validate_phone(value):
    normalize_phone(value)


@functools.cache
def known_timezones():
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value):
    if value not in known_timezones():
        raise ValidationError(_("%(value)s is not a known time zone.") % {"value": value}, code="invalid_timezone")
