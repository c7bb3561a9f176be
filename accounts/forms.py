import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from rest_framework.exceptions import Throttled

from .invitations import invitations_send
from .models import User
from .throttling import PasswordResetThrottle, SignInGuard


def too_many_attempts(exc):
    """The form error for a refused attempt: a Throttled (or LockedOut) carrying the seconds to wait."""
    minutes = max(1, math.ceil((exc.wait or 60) / 60))
    return ValidationError(
        ngettext("Too many attempts. Please wait %(minutes)d minute and try again.",
                 "Too many attempts. Please wait %(minutes)d minutes and try again.", minutes),
        code="too_many_attempts", params={"minutes": minutes},
    )


PASSWORD_SIGN_IN_OFF = _("Your account signs in with your university account: use the single sign-on "
                         "button, not a password.")


class GuardedSignInMixin:
    """Sign-in through SignInGuard: the same throttle per address and lockout per account as the API."""

    def clean(self):
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()
        guard = SignInGuard(self.request, username)
        try:
            guard.check()
        except Throttled as exc:
            raise too_many_attempts(exc)
        try:
            cleaned = super().clean()
        except ValidationError:
            if self.user_cache is None:  # a wrong password, not a right one refused by confirm_login_allowed
                guard.failed()
            raise
        guard.succeeded()
        return cleaned

    def confirm_login_allowed(self, user):
        if not user.password_sign_in_allowed:
            raise ValidationError(PASSWORD_SIGN_IN_OFF, code="password_sign_in_off")
        super().confirm_login_allowed(user)


class ConsoleSignInForm(GuardedSignInMixin, AdminAuthenticationForm):
    """The console's sign-in (/admin/login/)."""


class GuardedPasswordResetForm(PasswordResetForm):
    """Password reset requests, throttled per client address; the view passes the request in.

    Django's form skips accounts without a usable password (a provisioned person who never chose
    one): those get an invitation instead, so the page says the same thing either way and is true.
    """

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean(self):
        cleaned = super().clean()
        if self.request is not None and not self.errors:
            try:
                PasswordResetThrottle().check(self.request)
            except Throttled as exc:
                raise too_many_attempts(exc)
        return cleaned

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        email = self.cleaned_data["email"]
        without_password = [user for user in User.objects.filter(email__iexact=email, is_active=True)
                            if not user.has_usable_password()]
        invitations_send(without_password, requested=True)


class SignInForm(GuardedSignInMixin, AuthenticationForm):
    """Django's sign-in form, labelled for a student or staff number."""

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = _("Username")
        self.fields["username"].help_text = _("Your student or staff number.")
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autocapitalize": "none"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class PhoneForm(forms.Form):
    phone = forms.CharField(
        label=_("Mobile phone number"), max_length=30,
        help_text=_("International format, for example +33612345678."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel", "inputmode": "tel"}),
    )


class PhoneCodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code received by SMS"), max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
