"""Validating descriptors for plain (non-model) objects such as `Recipient`.

Like Django's field descriptors: the value lives in `instance.__dict__`, and reading the
attribute on the class returns the descriptor itself.
"""

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.validators import normalize_phone

from .constants import Priority as PriorityChoices


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
