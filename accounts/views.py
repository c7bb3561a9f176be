"""Account pages: phone verification, password reset requests, accepting an invitation.
Sign-in is Django's view with SignInForm (accounts/urls.py)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from .forms import GuardedPasswordResetForm, PhoneCodeForm, PhoneForm
from .invitations import invitation_accept, invitation_user
from .phone import phone_verification_confirm, phone_verification_pending, phone_verification_start


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset request, throttled per client address (the form counts each valid request)."""

    form_class = GuardedPasswordResetForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}


@sensitive_post_parameters("new_password1", "new_password2")
@never_cache
@require_http_methods(["GET", "POST"])
def invitation(request, token):
    """The set-password page an invitation links to, without signing in: the signed token authorises.

    Setting the password signs the person in and lands them on their inbox. The link works once; a used,
    expired or tampered one gets the link-problem page, which offers a new link (the reset form sends one).
    """
    user, problem = invitation_user(token)
    if problem:
        return render(request, "notifications/link_problem.html", {"problem": problem, "invitation": True},
                      status=400)
    with translation.override(user.language or translation.get_language()):
        form = SetPasswordForm(user, request.POST if request.method == "POST" else None)
        if form.is_valid():
            invitation_accept(user=user, password=form.cleaned_data["new_password1"])
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # a password sign-in
            messages.success(request, _("Your password is set and you are signed in. Welcome to FlashNotify."))
            return redirect(settings.LOGIN_REDIRECT_URL)
        return render(request, "accounts/invitation.html", {"form": form, "invited": user})


def _add_errors(form, exc):
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@login_required
@require_http_methods(["GET", "POST"])
def phone_verify(request):
    """Step 1: the number, to which a code is sent. Step 2: the code."""
    user = request.user
    phone_form = PhoneForm(initial={"phone": user.phone})
    code_form = PhoneCodeForm()
    if request.method == "POST" and "send" in request.POST:
        phone_form = PhoneForm(request.POST)
        if phone_form.is_valid():
            try:
                phone_verification_start(user=user, phone=phone_form.cleaned_data["phone"])
            except ValidationError as exc:
                _add_errors(phone_form, exc)
            else:
                messages.info(request, _("We sent a code by SMS. Enter it below."))
                return redirect("phone-verify")
    elif request.method == "POST":
        code_form = PhoneCodeForm(request.POST)
        if code_form.is_valid():
            try:
                phone_verification_confirm(user=user, code=code_form.cleaned_data["code"])
            except ValidationError as exc:
                _add_errors(code_form, exc)
            else:
                messages.success(request, _("Your phone number is verified. You can now receive text messages."))
                return redirect("phone-verify")
    return render(request, "accounts/phone.html", {
        "phone_form": phone_form, "code_form": code_form, "pending": phone_verification_pending(user),
    })
