"""Validating descriptors for plain (non-model) objects such as `Recipient`.

Like Django's field descriptors: the value lives in `instance.__dict__`, and reading the
attribute on the class returns the descriptor itself.
"""

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from .constants import Priority as PriorityChoices


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


class ValidatedField:
    def __init__(self, *, required=False):
        self.required = required

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return instance.__dict__.get(self.name, "")

    def __set__(self, instance, value):
        if value in (None, ""):
            if self.required:
                raise ValidationError({self.name: ["This field is required."]})
            instance.__dict__[self.name] = ""
            return
        try:
            instance.__dict__[self.name] = self.clean(value)
        except ValidationError as exc:
            raise ValidationError({self.name: exc.messages})

    def clean(self, value):
        return value


class Email(ValidatedField):
    def clean(self, value):
        value = str(value).strip()
        validate_email(value)
        return value


class Phone(ValidatedField):
    """A phone number, normalised to E.164."""

    def clean(self, value):
        return normalize_phone(value)


class Priority(ValidatedField):
    def clean(self, value):
        if value not in PriorityChoices.values:
            raise ValidationError(f"{value!r} is not a priority; choose one of {', '.join(PriorityChoices.values)}.")
        return PriorityChoices(value)
