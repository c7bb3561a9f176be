from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import ApiKey, Cohort, User
from .services import api_key_create, api_key_revoke


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = BaseUserAdmin.fieldsets + (
        (_("Contact and preferences"), {
            "fields": ("phone", "phone_verified_at", "language", "timezone", "quiet_hours_start",
                       "quiet_hours_end", "digest_hour"),
        }),
    )
    add_fieldsets = BaseUserAdmin.add_fieldsets + (
        (_("Contact"), {"fields": ("email", "phone", "language", "timezone")}),
    )
    list_display = ("username", "email", "phone", "first_name", "last_name", "is_staff", "is_active")
    search_fields = ("username", "email", "phone", "first_name", "last_name")


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "created_at")
    search_fields = ("code", "name")
    filter_horizontal = ("members", "managers")


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["user", "name", "scopes", "cohorts", "expires_at", "revoked_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """The full key is shown once, in the message after creation; only its hash is stored."""

    form = ApiKeyForm
    list_display = ("name", "prefix", "user", "scopes", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "last_used_at", "created_at")
    filter_horizontal = ("cohorts",)
    raw_id_fields = ("user",)
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = api_key_create(user=obj.user, name=obj.name, scopes=obj.scopes, expires_at=obj.expires_at)
        # The form saves cohorts (save_m2m) on this instance next: make it the created row.
        obj.pk, obj.prefix, obj.hashed_key, obj.created_at = key.pk, key.prefix, key.hashed_key, key.created_at
        obj._state.adding = False
        request._api_key_raw = raw

    def response_add(self, request, obj, post_url_continue=None):
        # Shown on this page only: never put into a message, a cookie or the session.
        return TemplateResponse(request, "admin/accounts/apikey/created.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "key": obj,
            "raw_key": request._api_key_raw, "title": _("API key created"),
        })

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key)
