from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import Cohort, User


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
