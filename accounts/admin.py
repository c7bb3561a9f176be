import io

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.widgets import AutocompleteSelect
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .invitations import invitations_send
from .models import ApiKey, Cohort, Role, User
from .roles import console_role
from .roster import roster_import
from .services import (
    USER_COLUMNS,
    api_key_create,
    api_key_revoke,
    user_sign_out_everywhere,
    users_read_csv,
    users_upsert,
)


class RoleFilter(admin.SimpleListFilter):
    """The user list by role, named in the reader's language (the roles are groups named in English)."""

    title = _("role")
    parameter_name = "role"
    LABELS = {Role.ADMIN: _("Administrators"), Role.STAFF: _("Staff members"),
              Role.USER: _("Students and other users"), Role.API_USER: _("API integrations"),
               Role.EMERGENCY: _("Emergency managers"), Role.ON_DUTY: _("Operators on duty")}

    def lookups(self, request, model_admin):
        return [(role, self.LABELS[role]) for role in Role.values]

    def queryset(self, request, queryset):
        return queryset.filter(groups__name=self.value()) if self.value() in Role.values else queryset


class UserImportForm(forms.Form):
    csv_file = forms.FileField(label=_("CSV file"))
    dry_run = forms.BooleanField(required=False, initial=True, label=_("Dry run: check every row, write nothing"))


class RosterImportForm(forms.Form):
    bundle = forms.FileField(label=_("OneRoster bundle (.zip)"))
    dry_run = forms.BooleanField(required=False, initial=True,
                                 label=_("Dry run: show the difference, apply nothing"))
    skip_invalid = forms.BooleanField(required=False, label=_("Apply the valid rows and skip the invalid ones"))


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = BaseUserAdmin.fieldsets + (
        (_("Contact and preferences"), {
            "fields": ("person_page", "phone", "phone_verified_at", "language", "timezone", "quiet_hours_start",
                       "quiet_hours_end", "digest_hour"),
        }),
    )
    add_fieldsets = BaseUserAdmin.add_fieldsets + (
        (_("Contact"), {"fields": ("email", "phone", "language", "timezone")}),
    )
    # Only the student confirms a number (a code by SMS); changing it here makes it unverified.
    readonly_fields = ("phone_verified_at", "person_page")
    list_display = ("username", "email", "phone", "first_name", "last_name", "is_staff", "is_active", "person_page")
    list_filter = ("is_staff", "is_superuser", "is_active", RoleFilter)
    search_fields = ("username", "email", "phone", "first_name", "last_name")
    change_list_template = "admin/accounts/user/change_list.html"
    actions = ["sign_out_everywhere", "send_invitations"]

    @admin.display(description=_("what they receive"))
    def person_page(self, user):
        """The person's page: preferences as applied, cohorts, reachability, last deliveries with reasons."""
        if not user.pk:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:person", args=[user.pk]),
                           _("Preferences and deliveries"))

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if console_role(request.user) == "admin":
            return queryset
        # Staff see the members of the cohorts they manage, and themselves.
        return queryset.filter(Q(pk=request.user.pk) | Q(cohorts__managers=request.user)).distinct()

    @admin.action(description=_("Sign out everywhere (end every session and API token)"), permissions=["change"])
    def sign_out_everywhere(self, request, queryset):
        users = list(queryset)
        for user in users:
            user_sign_out_everywhere(user=user)
            self.log_change(request, user, "Signed out everywhere: every session and API token ended.")
        self.message_user(request, ngettext("%(count)d user signed out everywhere.",
                                            "%(count)d users signed out everywhere.", len(users))
                          % {"count": len(users)}, messages.SUCCESS)

    @admin.action(description=_("Send an invitation (a link to choose a password)"), permissions=["change"])
    def send_invitations(self, request, queryset):
        """Resend invitations: sent now for a page's selection, by the workers for a larger one."""
        users = list(queryset.order_by("username"))
        report = invitations_send(users, defer=len(users) > settings.INVITATION_BATCH_SIZE)
        for done, note in ((report.sent, "Invitation sent: a link to choose a password."),
                           (report.queued, "Invitation queued: a link to choose a password.")):
            for start in range(0, len(done), 1000):
                LogEntry.objects.log_actions(
                    user_id=request.user.pk, queryset=User.objects.filter(pk__in=[u.pk for u in done[start:start + 1000]]),
                    action_flag=CHANGE, change_message=note,
                )
        parts = []
        if report.sent or not report.queued:
            parts.append(ngettext("%(count)d invitation sent.", "%(count)d invitations sent.", len(report.sent))
                         % {"count": len(report.sent)})
        if report.queued:
            parts.append(ngettext("%(count)d invitation handed to the workers.",
                                  "%(count)d invitations handed to the workers.", len(report.queued))
                         % {"count": len(report.queued)})
        if report.skipped:
            parts.append(_("Skipped: %(reasons)s.") % {"reasons": report.skipped_text()})
        if report.failed:
            parts.append(_("Could not be sent: %(users)s.") % {"users": ", ".join(u.username for u in report.failed)})
        level = messages.WARNING if report.skipped or report.failed else messages.SUCCESS
        self.message_user(request, " ".join(parts), level)

    def get_urls(self):
        return [path("import/", self.admin_site.admin_view(self.import_view), name="accounts_user_import"),
                path("import-roster/", self.admin_site.admin_view(self.roster_import_view),
                     name="accounts_user_import_roster")] + super().get_urls()

    def import_view(self, request):
        """Users and cohort memberships from CSV: every row is checked first; nothing is written until all are valid."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = UserImportForm(request.POST or None, request.FILES or None)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "form": form,
                   "title": _("Import users and cohort memberships"), "columns": USER_COLUMNS}
        if request.method == "POST" and form.is_valid():
            try:
                text = form.cleaned_data["csv_file"].read().decode("utf-8-sig")
                rows = users_read_csv(io.StringIO(text, newline=""))
            except UnicodeDecodeError:
                form.add_error("csv_file", _("The file is not UTF-8 text."))
            except ValidationError as exc:
                form.add_error("csv_file", exc.messages)
            else:
                report = users_upsert(rows, dry_run=True)
                written = False
                if not report.invalid and not form.cleaned_data["dry_run"]:
                    report = users_upsert(rows)
                    written = True
                    self.log_import(request, report)
                    self.message_user(request, _("Imported: %(created)d created, %(updated)d updated, "
                                                 "%(unchanged)d unchanged, %(invalid)d invalid.") % report.summary(),
                                      messages.SUCCESS)
                elif report.invalid and not form.cleaned_data["dry_run"]:
                    self.message_user(request, _("%(count)d invalid row(s): nothing was written.")
                                      % {"count": len(report.invalid)}, messages.ERROR)
                context.update(report=report, summary=report.summary(), written=written,
                               errors=[(row.line, row.username, field, " ".join(msgs))
                                       for row in report.invalid for field, msgs in row.errors.items()])
        return TemplateResponse(request, "admin/accounts/user/import.html", context)

    def log_import(self, request, report):
        """One admin-history entry per user the import created or changed."""

        for action, flag in (("created", ADDITION), ("updated", CHANGE)):
            usernames = [row.username for row in report.rows if row.action == action]
            for start in range(0, len(usernames), 1000):
                LogEntry.objects.log_actions(
                    user_id=request.user.pk, queryset=User.objects.filter(username__in=usernames[start:start + 1000]),
                    action_flag=flag, change_message=f"{action.capitalize()} by a CSV import.",
                )

    def roster_import_view(self, request):
        """A OneRoster 1.2 CSV bundle: the difference first; applied only when the whole bundle is valid."""
        if console_role(request.user) != "admin":
            raise PermissionDenied
        form = RosterImportForm(request.POST or None, request.FILES or None)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "form": form,
                   "title": _("Import a OneRoster bundle")}
        if request.method == "POST" and form.is_valid():
            report = roster_import(form.cleaned_data["bundle"], dry_run=form.cleaned_data["dry_run"],
                                   skip_invalid=form.cleaned_data["skip_invalid"])
            if report.applied:
                self.log_roster_import(request, report)
                self.message_user(request, _("Roster imported: %(summary)s.") % {"summary": report.summary()},
                                  messages.SUCCESS)
            elif report.refused:
                self.message_user(request, ngettext(
                    "%(count)d problem in the bundle: nothing was applied.",
                    "%(count)d problems in the bundle: nothing was applied.", len(report.problems))
                    % {"count": len(report.problems)}, messages.ERROR)
            context.update(report=report, changes=report.lines())
        return TemplateResponse(request, "admin/accounts/user/import_roster.html", context)

    def log_roster_import(self, request, report):
        """Admin history: one entry per person and per cohort the import changed, naming the import's changes."""
        message = f"OneRoster import: {report.summary()}."
        for model, field, names in ((User, "username", {n for c in report.changes for n in c.usernames}),
                                    (Cohort, "code", {n for c in report.changes for n in c.codes})):
            names = sorted(names)
            for start in range(0, len(names), 1000):
                LogEntry.objects.log_actions(
                    user_id=request.user.pk, queryset=model.objects.filter(**{f"{field}__in": names[start:start + 1000]}),
                    action_flag=CHANGE, change_message=message,
                )


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "created_at")
    search_fields = ("code", "name")
    filter_horizontal = ("members", "managers")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if console_role(request.user) == "admin":
            return queryset
        return queryset.filter(managers=request.user)


class OwnerSelect(AutocompleteSelect):
    """The API key owner's autocomplete box, with a prompt: select2 names its box by the text it shows,
    and the admin's widget shows none until someone is chosen."""

    def build_attrs(self, base_attrs, extra_attrs=None):
        attrs = super().build_attrs(base_attrs, extra_attrs)
        attrs["data-placeholder"] = _("Type a username, a name or an email")
        return attrs


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(label=_("scopes"), choices=ApiKey.Scope.choices,
                                       widget=forms.CheckboxSelectMultiple, help_text=_("What the key may do."))
    # One labelled field (the browser's date and time picker), not the admin's split date and time boxes.
    expires_at = forms.DateTimeField(label=_("expires at"), required=False,
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"},
                                                                format="%Y-%m-%dT%H:%M"),
                                     help_text=_("Empty: the key never expires."))

    class Meta:
        model = ApiKey
        fields = ["user", "name", "scopes", "cohorts", "expires_at"]
        labels = {"user": _("owner")}
        help_texts = {"user": _("The person the key acts for: type part of their username, name or email.")}


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """The full key is shown once, in the message after creation; only its hash is stored.

    A key is revoked (the list's action, or the button on its page), never by typing a date:
    each revocation is recorded in the admin history.
    """

    form = ApiKeyForm
    list_display = ("name", "prefix", "user", "scopes", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "revoked_at", "last_used_at", "created_at")
    autocomplete_fields = ("user",)  # cohorts: a plain labelled list (select2's inline search has no label)
    actions = ["revoke"]
    change_form_template = "admin/accounts/apikey/change_form.html"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["widget"] = OwnerSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is None:  # a new key: nothing to show of a prefix, a use or a revocation yet
            return [name for name in fields if name not in self.readonly_fields]
        return fields

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

    def get_urls(self):
        return [path("<int:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view),
                     name="accounts_apikey_revoke")] + super().get_urls()

    def _revoke(self, request, keys):
        """Revoke each key not yet revoked, with an admin-history entry; returns how many were."""
        revoked = 0
        for key in keys:
            if key.revoked_at is None:
                api_key_revoke(key)
                self.log_change(request, key, "Revoked: the key is refused from now on.")
                revoked += 1
        return revoked

    def revoke_view(self, request, object_id):
        """The change page's Revoke button (POST only)."""
        key = self.get_object(request, str(object_id))
        if key is None:
            raise Http404
        if request.method != "POST" or not self.has_change_permission(request, key):
            raise PermissionDenied
        if self._revoke(request, [key]):
            self.message_user(request, _("The API key “%(name)s” is revoked: it is refused from now on.")
                              % {"name": key.name}, messages.SUCCESS)
        else:
            self.message_user(request, _("The API key “%(name)s” was already revoked.") % {"name": key.name},
                              messages.WARNING)
        return redirect("admin:accounts_apikey_change", key.pk)

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request, queryset):
        revoked = self._revoke(request, queryset.filter(revoked_at__isnull=True))
        self.message_user(request, ngettext("%(count)d API key revoked.", "%(count)d API keys revoked.", revoked)
                          % {"count": revoked}, messages.SUCCESS)
