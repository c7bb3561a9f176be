"""The console's incident templates: Admin adds, changes and deactivates them; the Emergency role looks.

Thin: validation and versioning are `incident_template_save` (notifications.services.templates);
a template that an alert used is never deleted (deactivate it). The pages that send an alert from
a template (notifications.console_templates) are registered here, with the console's gate.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from channels_app.constants import Channel, Severity, severity_label
from channels_app.registry import NotificationMeta

from . import console_templates
from .admin_base import ReadOnly
from .models import IncidentTemplate, IncidentTemplateVersion, Notification
from .services.templates import incident_template_deactivate, incident_template_save, incident_template_validate


def emergency_channels():
    return [(channel, label) for channel, label in Channel.choices
            if channel in NotificationMeta.registry[Notification.EMERGENCY_NOTIFIER].channels]


def names_list(raw):
    return [name for name in (raw or "").replace(",", " ").split() if name]


class IncidentTemplateForm(forms.ModelForm):
    """The template's content as a person types it: the French version in its own fields, lists as words."""

    severity = forms.ChoiceField(label=_("Severity"), choices=Severity.choices)
    title_fr = forms.CharField(label=_("Title (French)"), max_length=200, required=False)
    body_fr = forms.CharField(label=_("Message (French)"), required=False,
                              widget=forms.Textarea(attrs={"rows": 5, "cols": 60}))
    variables_text = forms.CharField(
        label=_("Variables"), required=False,
        help_text=_("The {names} the texts use, separated by spaces or commas, e.g. building time instructions. "
                    "Each is filled in when the alert is sent."))
    channels = forms.MultipleChoiceField(label=_("Channels"), choices=(), widget=forms.CheckboxSelectMultiple,
                                         required=False,
                                         help_text=_("None ticked: every channel of an emergency alert."))
    audience = forms.JSONField(
        label=_("Audience"), required=False,
        help_text=_('Empty: chosen when sending. Else {"cohorts": ["code"], "users": ["username"], "roles": '
                    '["Staff"], "everyone": true}; the sender may change it within what they may reach.'))
    ladder_text = forms.CharField(
        label=_("Escalation ladder"), required=False,
        help_text=_("Channels in order, e.g. push sms email; empty: the emergency alert's own ladder."))

    class Meta:
        model = IncidentTemplate
        fields = ("name", "kind", "title", "body", "severity", "channels", "audience", "escalation_delay_minutes",
                  "checkin", "active")
        widgets = {"body": forms.Textarea(attrs={"rows": 5, "cols": 60})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "title" not in self.fields:
            return  # viewed only: IncidentTemplateAdmin shows the stored values
        self.fields["channels"].choices = emergency_channels()
        self.fields["title"].label = _("Title (English)")
        self.fields["body"].label = _("Message (English)")
        self.fields["title"].help_text = _("One line. Variables are written {building}, {time}, …")
        instance = self.instance
        french = (instance.translations or {}).get("fr") or {}
        self.initial.setdefault("title_fr", french.get("title", ""))
        self.initial.setdefault("body_fr", french.get("body", ""))
        self.initial.setdefault("variables_text", " ".join(instance.variables or []))
        self.initial.setdefault("ladder_text", " ".join(instance.escalation_ladder or []))
        if not self.initial.get("audience"):
            self.fields["audience"].initial = self.initial["audience"] = {}
        if instance.pk is None:
            self.initial.setdefault("channels", [channel for channel, _label in emergency_channels()])

    def _post_clean(self):
        super()._post_clean()
        data, template = self.cleaned_data, self.instance
        template.audience = data.get("audience") or {}
        template.variables = names_list(data.get("variables_text"))
        template.escalation_ladder = names_list(data.get("ladder_text"))
        template.translations = {"fr": {"title": data.get("title_fr") or "", "body": data.get("body_fr") or ""}}
        try:
            incident_template_validate(template)
        except ValidationError as exc:
            fields = {"variables": "variables_text", "escalation_ladder": "ladder_text", "translations": "title_fr"}
            for field, errors in exc.message_dict.items():
                field = fields.get(field, field)
                self.add_error(field if field in self.fields else None, errors)


class IncidentTemplateVersionInline(ReadOnly, admin.TabularInline):
    """The version history: read-only, visible to whoever may see the template."""

    model = IncidentTemplateVersion
    extra = 0
    can_delete = False
    fields = ("version", "saved_at", "saved_by", "content_summary")
    readonly_fields = fields
    verbose_name = _("version")
    verbose_name_plural = _("version history")

    @admin.display(description=_("content"))
    def content_summary(self, version):
        return format_html('<pre translate="no">{}</pre>',
                           json.dumps(version.content, ensure_ascii=False, indent=1, sort_keys=True))

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("saved_by")

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("notifications.view_incidenttemplate")


@admin.register(IncidentTemplate)
class IncidentTemplateAdmin(admin.ModelAdmin):
    form = IncidentTemplateForm
    list_display = ("name", "kind", "version", "severity_display", "channel_list", "checkin", "active", "used",
                    "updated_at")
    list_filter = ("kind", "active")
    search_fields = ("name", "title")
    readonly_fields = ("version", "updated_at")
    inlines = (IncidentTemplateVersionInline,)
    actions = ("deactivate",)
    fieldsets = (
        (None, {"fields": ("name", "kind", "version", "active", "updated_at")}),
        (_("Message"), {"fields": ("title", "body", "title_fr", "body_fr", "variables_text", "severity")}),
        (_("Sending"), {"fields": ("channels", "audience", "escalation_delay_minutes", "ladder_text", "checkin")}),
    )

    # What someone who may only view a template sees (the form's own fields are for changing it).
    view_fieldsets = (
        (None, {"fields": ("name", "kind", "version", "active", "updated_at")}),
        (_("Message"), {"fields": ("title", "body", "french", "variables", "severity_display")}),
        (_("Sending"), {"fields": ("channel_list", "audience", "escalation_delay_minutes", "escalation_ladder",
                                   "checkin")}),
    )

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return self.view_fieldsets
        return super().get_fieldsets(request, obj)

    @admin.display(description=_("French version"))
    def french(self, template):
        version = (template.translations or {}).get("fr") or {}
        return format_html('<pre translate="no">{}\n\n{}</pre>', version.get("title", ""), version.get("body", ""))

    @admin.display(description=_("severity"), ordering="severity")
    def severity_display(self, template):
        return severity_label(template.severity)

    @admin.display(description=_("channels"))
    def channel_list(self, template):
        labels = dict(Channel.choices)
        return ", ".join(str(labels.get(channel, channel)) for channel in template.channels) or gettext("all")

    @admin.display(description=_("alerts sent"), ordering="used_count")
    def used(self, template):
        return template.used_count

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(used_count=Count("notifications"))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a used template must stay: delete one at a time, if unused
        return actions

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.notifications.exists():
            return False  # alerts refer to it and its versions: deactivate it instead
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        incident_template_save(obj, by=request.user)

    @admin.action(description=_("Deactivate (keep, but no longer offer for sending)"), permissions=["change"])
    def deactivate(self, request, queryset):
        count = 0
        for template in queryset.filter(active=True):
            incident_template_deactivate(template, by=request.user)
            count += 1
        self.message_user(request, ngettext("%(n)d template deactivated.", "%(n)d templates deactivated.", count)
                          % {"n": count}, messages.SUCCESS)


admin.site.register_page("emergency/", console_templates.emergency_pick_view, name="emergency")
admin.site.register_page("emergency/<int:template_id>/", console_templates.emergency_send_view,
                         name="emergency_send")
