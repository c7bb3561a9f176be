import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from .validators import normalize_phone, validate_timezone


class Role(models.TextChoices):
    """Roles are Django groups (created by migration 0002) with these names."""

    ADMIN = "Admin"
    STAFF = "Staff"
    USER = "User"
    API_USER = "API_User"
    # With Staff: may send emergency alerts and approve another's (notifications.send_emergency).
    EMERGENCY = "Emergency"
    # Emergency operators on duty: a check-in reply asking for help alerts them.
    ON_DUTY = "On_Duty"


class User(AbstractUser):
    """A student or a member of staff; `username` is the student or staff number."""

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        FRENCH = "fr", "Français"

    email = models.EmailField(_("email address"), blank=True, db_index=True)
    institutional_id = models.CharField(
        _("institutional id"), max_length=255, null=True, blank=True, unique=True,
        help_text=_("The university's stable id for this person (identity provider subject or roster "
                    "sourcedId): single sign-on and roster sync match people by it first."),
    )
    roster_managed = models.BooleanField(
        _("kept by the roster"), default=False,
        help_text=_("Provisioned by roster sync (OneRoster): deactivated when the roster no longer lists them, "
                    "reactivated when it does again."),
    )
    sso_provider = models.CharField(
        _("single sign-on"), max_length=8, blank=True, default="", editable=False,
        help_text=_("The protocol (oidc or saml) this person last signed in through; empty for a local account."),
    )
    phone = models.CharField(
        _("phone number"), max_length=20, blank=True,
        help_text=_("International format (E.164), for example +33612345678."),
    )
    phone_verified_at = models.DateTimeField(_("phone verified at"), null=True, blank=True)
    language = models.CharField(_("language"), max_length=5, choices=Language.choices, default=Language.ENGLISH)
    timezone = models.CharField(_("time zone"), max_length=64, default="UTC", validators=[validate_timezone])
    quiet_hours_start = models.TimeField(_("quiet hours start"), null=True, blank=True)
    quiet_hours_end = models.TimeField(_("quiet hours end"), null=True, blank=True)
    sms_stopped_at = models.DateTimeField(
        _("replied STOP at"), null=True, blank=True,
        help_text=_("They replied STOP to our text messages: none go to them but emergency alerts, until they "
                    "reply START."))
    digest_hour = models.PositiveSmallIntegerField(_("digest hour"), default=18, help_text=_("0 to 23, local time."))
    auth_version = models.PositiveIntegerField(
        _("sign-in version"), default=0, editable=False,
        help_text=_("Raised to end every session and API token issued before: a new password, "
                    "deactivation, or “sign out everywhere”."),
    )

    objects = UserManager()

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def clean(self):
        super().clean()

        errors = {}
        try:
            self.phone = normalize_phone(self.phone)
        except ValidationError as exc:
            errors["phone"] = exc.messages
        if self.digest_hour is not None and not 0 <= self.digest_hour <= 23:
            errors["digest_hour"] = [_("Choose an hour from 0 to 23.")]
        if errors:
            raise ValidationError(errors)

    @classmethod
    def from_db(cls, db, field_names, values):
        user = super().from_db(db, field_names, values)
        user._loaded_phone = user.__dict__.get("phone")
        user._loaded_phone_verified_at = user.__dict__.get("phone_verified_at")
        user._loaded_is_active = user.__dict__.get("is_active")
        return user

    def set_unusable_password(self):
        super().set_unusable_password()
        self._password_replaced = True

    def save(self, *args, **kwargs):
        # A number changed anywhere but through verification (admin, import, API) is unverified:
        # no SMS may go to it until its owner confirms a code again.
        loaded = getattr(self, "_loaded_phone", None)
        if loaded is not None and self.phone != loaded \
                and self.phone_verified_at == self._loaded_phone_verified_at and self.phone_verified_at:
            self.phone_verified_at = None
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "phone_verified_at"}
        # A new password (set_password; not the hasher's upgrade on sign-in, which clears _password
        # before saving) or a deactivation ends every session and token issued until now.
        password_replaced = self._password is not None or self.__dict__.pop("_password_replaced", False)
        deactivated = getattr(self, "_loaded_is_active", None) and self.is_active is False
        if not self._state.adding and (password_replaced or deactivated):
            self.auth_version += 1
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "auth_version"}
        super().save(*args, **kwargs)
        self._loaded_phone, self._loaded_phone_verified_at = self.phone, self.phone_verified_at
        self._loaded_is_active = self.is_active

    def get_session_auth_hash(self):
        return self._session_auth_hash()

    def get_session_auth_fallback_hash(self):
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._session_auth_hash(secret=secret)

    def _session_auth_hash(self, secret=None):
        # Django's hash of the password, with the sign-in version once it was raised: sessions
        # end with the tokens. At version 0 the value is Django's own, so no session ends on upgrade.
        value = self.password if not self.auth_version else f"{self.password}:{self.auth_version}"
        return salted_hmac("django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash", value,
                           secret=secret, algorithm="sha256").hexdigest()

    @property
    def password_sign_in_allowed(self):
        """False for a person known through single sign-on while SSO_USERS_PASSWORD_SIGN_IN is off."""
        return not self.sso_provider or settings.SSO_USERS_PASSWORD_SIGN_IN

    @property
    def has_verified_phone(self):
        return bool(self.phone and self.phone_verified_at)

    def has_role(self, role):
        return self.groups.filter(name=role).exists()


class Cohort(models.Model):
    """A named group of users: a course section, a programme year, a department."""

    code = models.SlugField(_("code"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    roster_id = models.CharField(
        _("roster class id"), max_length=255, null=True, blank=True, unique=True,
        help_text=_("The OneRoster class (sourcedId) this cohort mirrors: roster sync keeps its members and "
                    "managers."),
    )
    members = models.ManyToManyField(User, related_name="cohorts", blank=True, verbose_name=_("members"))
    managers = models.ManyToManyField(
        User, related_name="managed_cohorts", blank=True, verbose_name=_("managers"),
        help_text=_("Staff who may send to this cohort."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("cohort")
        verbose_name_plural = _("cohorts")

    def __str__(self):
        return f"{self.code} — {self.name}"


class ApiKeyQuerySet(models.QuerySet):
    def usable(self):
        now = timezone.now()
        return self.filter(revoked_at__isnull=True, user__is_active=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """An integration's key. Only a hash is stored; the full key is shown once, at creation."""

    class Scope(models.TextChoices):
        SEND = "send", _("Send notifications")
        READ_DELIVERIES = "read_deliveries", _("Read notifications and deliveries")
        MANAGE_USERS = "manage_users", _("Provision users and cohorts")

    PREFIX_LENGTH = 8

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("owner"))
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=PREFIX_LENGTH, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    cohorts = models.ManyToManyField(
        Cohort, blank=True, related_name="api_keys", verbose_name=_("cohorts"),
        help_text=_("Cohorts this key may send to; empty means every cohort its user may reach."),
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw_key):
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls):
        """Return (prefix, raw key). The raw key is `<prefix>.<secret>`."""
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        return prefix, f"{prefix}.{secrets.token_urlsafe(32)}"

    @property
    def is_usable(self):
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    def has_scope(self, scope):
        return scope in self.scopes


class PhoneVerification(models.Model):
    """A short code sent by SMS to confirm that a user owns a phone number."""

    MAX_ATTEMPTS = 5

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="phone_verifications")
    phone = models.CharField(max_length=20)
    code_hash = models.CharField(max_length=64)
    attempts = models.PositiveSmallIntegerField(default=0)
    expires_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
