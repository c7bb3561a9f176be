"""The console's compose form: what a sender may ask for, scoped to what they may reach.

In three sections (the message, its audience, its timing), with plain names. What is refused is
refused by `notification_validate` (the send's own validation), whose errors land on these fields.
"""

import json
import uuid
import zoneinfo

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Cohort, Role
from channels_app.constants import Category, Channel, Priority, Severity
from channels_app.registry import NotificationMeta, notifier_choices

from .models import Notification

# What each kind of message is called on the form (the notifier's key stays the value sent).
KIND_LABELS = {
    "academic": _("Academic: courses, deadlines, grades, timetable"),
    "security": _("Security or emergency alert"),
}

SEVERITIES = [("", _("— (security alerts only)")), *Severity.choices]

ROLE_LABELS = {Role.ADMIN: _("Administrators"), Role.STAFF: _("Staff members"),
               Role.USER: _("Students and other users"), Role.API_USER: _("API integrations"),
               Role.EMERGENCY: _("Emergency managers"), Role.ON_DUTY: _("Operators on duty")}

DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


def sender_zone(user):
    try:
        return zoneinfo.ZoneInfo(user.timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


class ComposeForm(forms.Form):
    notifier = forms.ChoiceField(label=_("Kind of message"), choices=())
    category = forms.ChoiceField(label=_("Category"), choices=Category.choices,
                                 help_text=_("Recipients choose per category which channels they receive."))
    priority = forms.ChoiceField(label=_("Priority"), choices=Priority.choices, initial=Priority.NORMAL,
                                 help_text=_("Urgent messages are sent during quiet hours."))
    severity = forms.ChoiceField(label=_("Severity"), choices=SEVERITIES, required=False,
                                 help_text=_("Required for a security or emergency alert."))
    title = forms.CharField(label=_("Title (English)"), max_length=200,
                            help_text=_("One line: the email subject, the push title, the start of the SMS."))
    body = forms.CharField(label=_("Message (English)"), widget=forms.Textarea(attrs={"rows": 5, "cols": 60}))
    title_fr = forms.CharField(label=_("Title (French)"), max_length=200, required=False,
                               help_text=_("Optional. Recipients whose language is French get the French version; "
                                           "without one they get the English."))
    body_fr = forms.CharField(label=_("Message (French)"), required=False,
                              widget=forms.Textarea(attrs={"rows": 5, "cols": 60}))
    channels = forms.MultipleChoiceField(label=_("Channels"), choices=Channel.choices,
                                         widget=forms.CheckboxSelectMultiple, required=False,
                                         help_text=_("None ticked: every channel of this kind of message. Each "
                                                     "recipient's preferences still apply."))
    cohorts = forms.ModelMultipleChoiceField(label=_("Cohorts"), queryset=Cohort.objects.none(), required=False,
                                             widget=forms.CheckboxSelectMultiple)
    users = forms.CharField(label=_("People"), required=False,
                            widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                            help_text=_("Usernames (student or staff numbers), separated by spaces, commas or lines."))
    roles = forms.MultipleChoiceField(label=_("Roles"), choices=[(role, ROLE_LABELS[role]) for role in Role.values],
                                      required=False,
                                      widget=forms.CheckboxSelectMultiple)
    everyone = forms.BooleanField(label=_("Everyone"), required=False)
    scheduled_for = forms.DateTimeField(label=_("Send at"), required=False, widget=DATETIME_INPUT)
    deadline = forms.DateTimeField(label=_("Deadline"), required=False, widget=DATETIME_INPUT,
                                   help_text=_("Optional: the date the message is about (shown in it)."))
    requires_ack = forms.BooleanField(label=_("Ask recipients to acknowledge"), required=False,
                                      help_text=_("Security alerts always ask."))
    checkin = forms.BooleanField(label=_("Ask for a check-in by text message"), required=False,
                                 help_text=_("Emergency alerts sent on SMS: \u201cReply 1 if you are safe, 2 if you "
                                             "need help.\u201d The answers are the roll call on the Watch page."))
    alert_status = forms.ChoiceField(
        label=_("Alert status"), choices=Notification.AlertStatus.choices, initial=Notification.AlertStatus.ACTUAL,
        required=False,
        help_text=_("Emergency alerts only. An exercise is labelled EXERCISE on every channel; a test goes only to "
                    "the test list."))
    escalation_delay_minutes = forms.IntegerField(
        label=_("Escalation delay (minutes)"), required=False,
        help_text=_("Optional. How long to wait for an acknowledgement before the next channel; empty: the kind "
                    "of message's delay."))
    escalation_ladder = forms.CharField(
        label=_("Escalation channels, in order"), required=False, max_length=100,
        help_text=_("Optional. The channels to try in turn, separated by commas, among email, sms, push and inbox "
                    "(e.g. push, sms, email); empty: the kind of message's order."))
    token = forms.CharField(widget=forms.HiddenInput, required=False)

    SECTIONS = (
        ("message", _("Message"), ("notifier", "alert_status", "category", "priority", "severity", "title", "body",
                                   "title_fr", "body_fr", "channels")),
        ("audience", _("Audience"), ("cohorts", "users", "roles", "everyone")),
        ("timing", _("Timing"), ("scheduled_for", "deadline", "requires_ack", "checkin")),
        ("escalation", _("Escalation"), ("escalation_delay_minutes", "escalation_ladder")),
    )

    def __init__(self, *args, user, is_admin, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.zone = sender_zone(user)
        self.fields["notifier"].choices = [(key, KIND_LABELS.get(key, label)) for key, label in notifier_choices()]
        # What each kind sends and needs, for static/console/compose.js (the service still decides).
        self.fields["notifier"].widget.attrs["data-kinds"] = json.dumps({
            key: {"categories": list(NotificationMeta.registry[key].categories),
                  "channels": list(NotificationMeta.registry[key].channels),
                  "severity": "severity" in NotificationMeta.registry[key].required_fields}
            for key, _label in notifier_choices()})
        self.fields["cohorts"].queryset = Cohort.objects.all() if is_admin else user.managed_cohorts.all()
        self.fields["scheduled_for"].label = _("Send at (your time, %(zone)s)") % {"zone": self.zone.key}
        self.fields["scheduled_for"].help_text = _("Empty: now.")
        self.fields["deadline"].label = _("Deadline (your time, %(zone)s)") % {"zone": self.zone.key}
        for name in ("body", "body_fr"):
            self.fields[name].widget.attrs["data-sms-counter"] = f"sms-{name}"
        if not is_admin:  # only an administrator may send to a role or to everyone
            del self.fields["roles"]
            del self.fields["everyone"]
        if not self.is_bound:
            self.initial.setdefault("token", uuid.uuid4().hex)

    def full_clean(self):
        # Dates are typed in the sender's time zone (User.timezone), whatever the request's.
        with timezone.override(self.zone):
            super().full_clean()

    def sections(self):
        """[(key, legend, [bound fields])] in the order the form shows them."""
        return [(key, legend, [self[name] for name in names if name in self.fields])
                for key, legend, names in self.SECTIONS]

    def clean_escalation_ladder(self):
        raw = self.cleaned_data.get("escalation_ladder") or ""
        return [name.strip().lower() for name in raw.replace(";", ",").replace(" ", ",").split(",") if name.strip()]

    def clean_users(self):
        raw = self.cleaned_data.get("users") or ""
        return sorted({name for name in raw.replace(",", " ").split() if name})

    def clean(self):
        data = super().clean()
        if not (data.get("cohorts") or data.get("users") or data.get("roles") or data.get("everyone")):
            raise ValidationError(_("Choose an audience: cohorts, people, roles or everyone."))
        if not data.get("token"):
            data["token"] = uuid.uuid4().hex
        return data

    # The service's field names that are not this form's: the notifier's required data is asked for
    # as `severity`; the audience is the cohorts, users, roles and everyone boxes together.
    SERVICE_FIELDS = {"data": "severity"}

    def add_service_errors(self, exc):
        """Show notification_validate's (or notification_send's) ValidationError on the form, by field."""
        for field, errors in getattr(exc, "message_dict", {None: exc.messages}).items():
            if field == "data" and any("'severity'" in error for error in errors):
                errors = [_("Choose a severity: a security or emergency alert must carry one.")]
            field = self.SERVICE_FIELDS.get(field, field)
            self.add_error(field if field in self.fields else None, errors)

    def audience(self):
        data = self.cleaned_data
        audience = {
            "cohorts": sorted(c.code for c in data.get("cohorts") or []),
            "users": data.get("users") or [],
            "roles": sorted(data.get("roles") or []),
            "everyone": bool(data.get("everyone")),
        }
        return {key: value for key, value in audience.items() if value}

    def send_kwargs(self):
        data = self.cleaned_data
        translations = {}
        if data.get("title_fr") or data.get("body_fr"):
            translations["fr"] = {"title": data.get("title_fr") or "", "body": data.get("body_fr") or ""}
        return dict(
            notifier=data["notifier"], category=data["category"], priority=data["priority"],
            channels=data.get("channels") or None, title=data["title"], body=data["body"], translations=translations,
            data={"severity": data["severity"]} if data.get("severity") else {},
            audience=self.audience(), scheduled_for=data.get("scheduled_for"), deadline=data.get("deadline"),
            requires_ack=data.get("requires_ack"), checkin=bool(data.get("checkin")),
            alert_status=data.get("alert_status") or None,
            escalation_delay_minutes=data.get("escalation_delay_minutes"),
            escalation_ladder=data.get("escalation_ladder") or [],
        )


class FollowUpForm(forms.Form):
    """An update or the all-clear of an emergency alert (the Watch page): to the original's audience and
    channels; what is refused is refused by the service (`incident_follow_up`), whose errors land here."""

    title = forms.CharField(label=_("Title (English)"), max_length=200)
    body = forms.CharField(label=_("Message (English)"), widget=forms.Textarea(attrs={"rows": 4, "cols": 60}))
    title_fr = forms.CharField(label=_("Title (French)"), max_length=200, required=False)
    body_fr = forms.CharField(label=_("Message (French)"), required=False,
                              widget=forms.Textarea(attrs={"rows": 4, "cols": 60}))

    def translations(self):
        data = self.cleaned_data
        if data.get("title_fr") or data.get("body_fr"):
            return {"fr": {"title": data.get("title_fr") or "", "body": data.get("body_fr") or ""}}
        return {}

    def add_service_errors(self, errors):
        for field, messages in errors.items():
            self.add_error(field if field in self.fields else None, messages)
