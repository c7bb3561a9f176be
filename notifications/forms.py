"""Forms of the student pages."""

import zoneinfo

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.validators import known_timezones
from channels_app.constants import MANDATORY_CATEGORIES, Category, Channel

from .models import Preference
from .engine.planning import category_defaults

GRID_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.INBOX)


def timezone_choices():
    names = sorted(name for name in known_timezones() if "/" in name and not name.startswith(("Etc/", "SystemV/")))
    return [("UTC", "UTC")] + [(name, name.replace("_", " ")) for name in names]


class InboxFilterForm(forms.Form):
    category = forms.ChoiceField(label=_("Category"), required=False,
                                 choices=[("", _("All categories"))] + list(Category.choices))


class AccountSettingsForm(forms.ModelForm):
    """The user's own settings shown beside the grid: language, time zone, quiet hours, digest hour."""

    language = forms.ChoiceField(label=_("Language"), choices=User.Language.choices)
    timezone = forms.ChoiceField(label=_("Time zone"), choices=timezone_choices)
    quiet_hours_start = forms.TimeField(label=_("Quiet hours start"), required=False,
                                        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    quiet_hours_end = forms.TimeField(label=_("Quiet hours end"), required=False,
                                      widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    digest_hour = forms.TypedChoiceField(label=_("Daily digest at"), coerce=int,
                                         choices=[(hour, f"{hour:02d}:00") for hour in range(24)])

    class Meta:
        model = User
        fields = ["language", "timezone", "quiet_hours_start", "quiet_hours_end", "digest_hour"]

    def clean(self):
        data = super().clean()
        start, end = data.get("quiet_hours_start"), data.get("quiet_hours_end")
        if (start is None) != (end is None):
            raise forms.ValidationError(_("Give both the start and the end of your quiet hours, or neither."))
        if start is not None and start == end:
            raise forms.ValidationError(_("Quiet hours must start and end at different times."))
        return data

    def clean_timezone(self):
        value = self.cleaned_data["timezone"]
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError(_("Choose a time zone from the list."))
        return value


class PreferenceGridForm(forms.Form):
    """One checkbox per category × channel (and an email digest per category); mandatory categories have none."""

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        chosen = {(p.category, p.channel): (p.enabled, p.digest) for p in Preference.objects.filter(user=user)}
        self.rows = []
        for category, category_label in Category.choices:
            mandatory = category in MANDATORY_CATEGORIES
            defaults = category_defaults(category)
            cells = []
            for channel in GRID_CHANNELS:
                enabled, digest = chosen.get((category, channel), defaults[channel])
                name = f"{category}__{channel}"
                if not mandatory:
                    self.fields[name] = forms.BooleanField(
                        required=False, initial=enabled,
                        label=_("%(category)s by %(channel)s") % {"category": category_label,
                                                                   "channel": Channel(channel).label})
                cells.append({"channel": channel, "name": name, "enabled": enabled})
            row = {"category": category, "label": category_label, "mandatory": mandatory, "cells": cells}
            if not mandatory:
                digest_name = f"{category}__digest"
                self.fields[digest_name] = forms.BooleanField(
                    required=False, initial=chosen.get((category, Channel.EMAIL), defaults[Channel.EMAIL])[1],
                    label=_("%(category)s: low-priority emails in a daily digest") % {"category": category_label})
                row["digest"] = digest_name
            self.rows.append(row)

    def bound_rows(self):
        """Rows with their bound fields, for the template."""
        for row in self.rows:
            cells = [{**cell, "field": self[cell["name"]] if cell["name"] in self.fields else None}
                     for cell in row["cells"]]
            yield {**row, "cells": cells, "digest_field": self[row["digest"]] if "digest" in row else None}

    def changes(self):
        """[(category, channel, enabled, digest)] that differ from what the user has now."""
        found = []
        for row in self.rows:
            if row["mandatory"]:
                continue
            digest_now = self.fields[row["digest"]].initial
            digest_new = self.cleaned_data[row["digest"]]
            for cell in row["cells"]:
                new = self.cleaned_data[cell["name"]]
                digest = digest_new if cell["channel"] == Channel.EMAIL else None
                if new != cell["enabled"] or (digest is not None and digest != digest_now):
                    found.append((row["category"], cell["channel"], new, digest))
        return found
