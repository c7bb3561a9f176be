"""The console's compose form: what a sender may ask for, scoped to what they may reach."""

import uuid

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import Cohort, Role
from channels_app.constants import Category, Channel, Priority
from channels_app.registry import notifier_choices


class ComposeForm(forms.Form):
    notifier = forms.ChoiceField(choices=())
    category = forms.ChoiceField(choices=Category.choices)
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.NORMAL)
    channels = forms.MultipleChoiceField(choices=Channel.choices, widget=forms.CheckboxSelectMultiple,
                                         required=False, help_text="None ticked: every channel of the notifier.")
    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 5, "cols": 60}))
    severity = forms.CharField(max_length=50, required=False, help_text="Security alerts only.")
    cohorts = forms.ModelMultipleChoiceField(queryset=Cohort.objects.none(), required=False,
                                             widget=forms.CheckboxSelectMultiple)
    users = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                            help_text="Usernames, separated by spaces, commas or lines.")
    roles = forms.MultipleChoiceField(choices=Role.choices, required=False, widget=forms.CheckboxSelectMultiple)
    everyone = forms.BooleanField(required=False)
    scheduled_for = forms.DateTimeField(required=False, help_text="Empty: now. YYYY-MM-DD HH:MM, server time.")
    deadline = forms.DateTimeField(required=False, help_text="YYYY-MM-DD HH:MM")
    requires_ack = forms.BooleanField(required=False, label="Requires acknowledgement")
    token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, user, is_admin, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["notifier"].choices = notifier_choices()
        self.fields["cohorts"].queryset = Cohort.objects.all() if is_admin else user.managed_cohorts.all()
        if not is_admin:  # only an administrator may send to a role or to everyone
            del self.fields["roles"]
            del self.fields["everyone"]
        if not self.is_bound:
            self.initial.setdefault("token", uuid.uuid4().hex)

    def clean_users(self):
        raw = self.cleaned_data.get("users") or ""
        return sorted({name for name in raw.replace(",", " ").split() if name})

    def clean(self):
        data = super().clean()
        if not (data.get("cohorts") or data.get("users") or data.get("roles") or data.get("everyone")):
            raise ValidationError("Choose an audience: cohorts, users, roles or everyone.")
        if not data.get("token"):
            data["token"] = uuid.uuid4().hex
        return data

    # The service's field names that are not this form's: the notifier's required data is asked for
    # as `severity`; the audience is the cohorts, users, roles and everyone boxes together.
    SERVICE_FIELDS = {"data": "severity"}

    def add_service_errors(self, exc):
        """Show notification_validate's (or notification_send's) ValidationError on the form, by field."""
        for field, errors in getattr(exc, "message_dict", {None: exc.messages}).items():
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
        return dict(
            notifier=data["notifier"], category=data["category"], priority=data["priority"],
            channels=data.get("channels") or None, title=data["title"], body=data["body"],
            data={"severity": data["severity"]} if data.get("severity") else {},
            audience=self.audience(), scheduled_for=data.get("scheduled_for"), deadline=data.get("deadline"),
            requires_ack=data.get("requires_ack"),
        )

