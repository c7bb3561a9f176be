import functools
import zoneinfo

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def normalize_phone(value, region=None):
    """Return `value` in E.164, or raise ValidationError with a message a person can act on."""
    if value in (None, ""):
        return ""
    try:
        number = phonenumbers.parse(str(value), region)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            _("Enter a phone number in international format, for example +33612345678."), code="invalid_phone"
        )
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(_("%(value)s is not a valid phone number.") % {"value": value}, code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_phone(value):
    normalize_phone(value)


@functools.cache
def known_timezones():
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value):
    if value not in known_timezones():
        raise ValidationError(_("%(value)s is not a known time zone.") % {"value": value}, code="invalid_timezone")
