"""The console's emergency alert from a template, in three steps: pick a template, fill it in, confirm and send.

For Staff and Admin with the emergency permission (`notifications.send_emergency`). Thin like every
door: the fields are `template_send_fields`, validation `notification_validate` with the sender's
reach, the counts the engine's planner as the compose confirmation shows them
(`console_compose.compose_confirmation`), the estimate `draft_estimate`, the send `alert_from_template`.
"""

import uuid

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Cohort, Role
from accounts.roles import console_role
from channels_app.constants import Channel, severity_label

from . import services
from .console_compose import compose_confirmation, receiving
from .console_forms import ROLE_LABELS
from .engine.audience import audience_users
from .models import IncidentTemplate, Notification
from .selectors import notification_plan_counts
from .services.estimate import draft_estimate, duration_text
from .services.sending import EMERGENCY_PERMISSION
from .services.templates import alert_from_template, template_send_fields

PICK_TEMPLATE = "admin/notifications/incidenttemplate/pick.html"
FILL_TEMPLATE = "admin/notifications/incidenttemplate/fill.html"
CONFIRM_TEMPLATE = "admin/notifications/incidenttemplate/confirm.html"

# The fields of the unsaved notification the confirmation previews and counts.
DRAFT_FIELDS = ("notifier", "category", "priority", "title", "body", "translations", "data", "channels", "audience",
                "requires_ack", "alert_status", "checkin", "escalation_delay_minutes", "escalation_ladder")

# The starter library's variables, as the form asks for them (any other is asked for by its name).
VARIABLE_LABELS = {"building": gettext_lazy("Building"), "time": gettext_lazy("Time"),
                   "instructions": gettext_lazy("Instructions")}

STATUS_HELP = {
    Notification.AlertStatus.ACTUAL: gettext_lazy("A real emergency."),
    Notification.AlertStatus.EXERCISE: gettext_lazy("A drill: labelled EXERCISE on every channel."),
    Notification.AlertStatus.TEST: gettext_lazy("A technical test: goes only to the test list."),
}


def may_send(request):
    if not request.user.has_perm(EMERGENCY_PERMISSION):
        raise PermissionDenied


class EmergencyForm(forms.Form):
    """Step 2: the template's variables, the alert's status, its audience (preset, changeable) and the check-in."""

    alert_status = forms.ChoiceField(label=gettext_lazy("Status"), choices=Notification.AlertStatus.choices,
                                     initial=Notification.AlertStatus.ACTUAL, widget=forms.RadioSelect)
    cohorts = forms.ModelMultipleChoiceField(label=gettext_lazy("Cohorts"), queryset=Cohort.objects.none(),
                                             required=False, widget=forms.CheckboxSelectMultiple)
    users = forms.CharField(label=gettext_lazy("People"), required=False,
                            widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                            help_text=gettext_lazy("Usernames (student or staff numbers), separated by spaces, "
                                                   "commas or lines."))
    roles = forms.MultipleChoiceField(label=gettext_lazy("Roles"), required=False,
                                      choices=[(role, ROLE_LABELS[role]) for role in Role.values],
                                      widget=forms.CheckboxSelectMultiple)
    everyone = forms.BooleanField(label=gettext_lazy("Everyone"), required=False)
    checkin = forms.BooleanField(label=gettext_lazy("Ask for a check-in by SMS (reply 1 if safe, 2 if help is "
                                                    "needed)"), required=False)
    version = forms.IntegerField(widget=forms.HiddenInput)
    token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, template, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.template = template
        is_admin = console_role(user) == "admin"
        self.fields["cohorts"].queryset = (Cohort.objects.all() if is_admin else user.managed_cohorts.all()
                                           ).order_by("name")
        self.fields["alert_status"].choices = [(value, f"{label} — {STATUS_HELP[value]}")
                                               for value, label in Notification.AlertStatus.choices]
        self.variable_names = list(template.variables or [])
        for name in self.variable_names:
            self.fields[f"var_{name}"] = forms.CharField(
                label=VARIABLE_LABELS.get(name, name), max_length=500,
                help_text=_("Fills {%(name)s} in the message.") % {"name": name})
        audience = template.audience or {}
        self.initial.update({
            "cohorts": list(Cohort.objects.filter(code__in=audience.get("cohorts", [])).values_list("pk", flat=True)),
            "users": " ".join(audience.get("users", [])), "roles": audience.get("roles", []),
            "everyone": audience.get("everyone", False), "checkin": template.checkin, "version": template.version,
        })
        if not is_admin:  # only an administrator may send to a role or to everyone
            del self.fields["roles"]
            del self.fields["everyone"]
        if not self.is_bound:
            self.initial.setdefault("token", uuid.uuid4().hex)

    def variable_fields(self):
        return [self[f"var_{name}"] for name in self.variable_names]

    def audience_fields(self):
        return [self[name] for name in ("cohorts", "users", "roles", "everyone") if name in self.fields]

    def clean(self):
        data = super().clean()
        if not (data.get("cohorts") or data.get("users") or data.get("roles") or data.get("everyone")):
            raise ValidationError(_("Choose an audience: cohorts, people, roles or everyone."))
        if not data.get("token"):
            data["token"] = uuid.uuid4().hex
        return data

    def clean_users(self):
        return sorted({name for name in (self.cleaned_data.get("users") or "").replace(",", " ").split() if name})

    def audience(self):
        data = self.cleaned_data
        audience = {"cohorts": sorted(c.code for c in data.get("cohorts") or []), "users": data.get("users") or [],
                    "roles": sorted(data.get("roles") or []), "everyone": bool(data.get("everyone"))}
        return {key: value for key, value in audience.items() if value}

    def send_kwargs(self):
        data = self.cleaned_data
        return dict(variables={name: data.get(f"var_{name}", "") for name in self.variable_names},
                    alert_status=data["alert_status"], audience=self.audience(), checkin=data.get("checkin"))

    def add_service_errors(self, exc):
        for field, errors in getattr(exc, "message_dict", {None: exc.messages}).items():
            self.add_error(field if field in self.fields else None, errors)


def template_cards(templates):
    labels = dict(Channel.choices)
    return [{"template": template, "kind": template.get_kind_display(), "severity": severity_label(template.severity),
             "channels": ", ".join(str(labels.get(c, c)) for c in template.channels) or _("every channel"),
             "variables": ", ".join(str(VARIABLE_LABELS.get(v, v)) for v in template.variables)}
            for template in templates]


def emergency_pick_view(request):
    """Step 1: the active templates, as cards."""
    may_send(request)
    templates = IncidentTemplate.objects.filter(active=True).order_by("kind", "name")
    context = {**admin.site.each_context(request), "title": _("Send an emergency alert"),
               "subtitle": _("Step 1 of 3: choose a template"), "cards": template_cards(templates)}
    return TemplateResponse(request, PICK_TEMPLATE, context)


def emergency_send_view(request, template_id):
    """Step 2 (fill in) and step 3 (confirm: preview, reach, estimate), then send and watch."""
    may_send(request)
    template = get_object_or_404(IncidentTemplate, pk=template_id, active=True)
    form = EmergencyForm(request.POST or None, template=template, user=request.user)
    context = {**admin.site.each_context(request), "template": template, "form": form,
               "card": template_cards([template])[0], "title": _("Send an emergency alert: %(name)s")
               % {"name": template.name}, "subtitle": _("Step 2 of 3: fill in the alert")}
    if request.method == "POST" and "_edit" not in request.POST and form.is_valid():
        try:
            if form.cleaned_data["version"] != template.version:
                raise ValidationError(_("This template was changed (now version %(version)d) while you were "
                                        "filling it in: review the alert again.") % {"version": template.version})
            kwargs = form.send_kwargs()
            fields = template_send_fields(template, **kwargs)
            cleaned = services.notification_validate(**fields)
            services.send_check(request.user, cleaned)
            draft = Notification(template=template, template_version=template.version,
                                 **{name: cleaned[name] for name in DRAFT_FIELDS if name in cleaned})
            recipients = audience_users(cleaned["audience"])
            plan = notification_plan_counts(draft, recipients)
            if request.POST.get("stage") == "confirm":
                if not receiving(plan):
                    raise ValidationError(_("Nobody would receive this alert on any channel: nothing was sent. "
                                            "Review the confirmation to see why."))
                notification, created = alert_from_template(
                    template, sender=request.user, idempotency_key=f"console:{request.user.pk}:"
                                                                  f"{form.cleaned_data['token']}", **kwargs)
                return redirect(reverse("admin:notifications_notification_change", args=[notification.pk]))
            estimate = draft_estimate(draft, recipients, fallback_sample=request.user)
            context.update(compose_confirmation(request, draft, recipients, plan), estimate=estimate,
                           estimate_time=duration_text(estimate["seconds"]),
                           title=_("Confirm the emergency alert: %(title)s") % {"title": draft.title},
                           subtitle=_("Step 3 of 3: confirm and send"))
            return TemplateResponse(request, CONFIRM_TEMPLATE, context)
        except services.IdempotencyConflict:
            form.add_error(None, _("This form was already sent with other content; start again to send another."))
        except PermissionDenied as exc:
            form.add_error(None, str(exc) or _("You may not send to this audience."))
        except ValidationError as exc:
            form.add_service_errors(exc)
    return TemplateResponse(request, FILL_TEMPLATE, context)
