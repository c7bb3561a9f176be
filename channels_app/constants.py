"""The engine's vocabulary: channels, categories and priorities.

Kept in the lowest layer so every app (and every notifier) speaks the same words.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Channel(models.TextChoices):
    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")
    PUSH = "push", _("Web push")
    INBOX = "inbox", _("Inbox")


class Category(models.TextChoices):
    ANNOUNCEMENT = "announcement", _("Course announcement")
    DEADLINE = "deadline", _("Deadline reminder")
    GRADE = "grade", _("Grade release")
    TIMETABLE = "timetable", _("Timetable change")
    ADMINISTRATIVE = "administrative", _("Administrative")
    SECURITY = "security", _("Security and emergency")


class Priority(models.TextChoices):
    LOW = "low", _("Low")
    NORMAL = "normal", _("Normal")
    HIGH = "high", _("High")
    URGENT = "urgent", _("Urgent")


class Severity(models.TextChoices):
    """A security alert's severity (Notification.data["severity"]): stored as the code, shown as the label."""

    LOW = "low", pgettext_lazy("severity", "Low")
    MODERATE = "moderate", pgettext_lazy("severity", "Moderate")
    HIGH = "high", pgettext_lazy("severity", "High")
    CRITICAL = "critical", pgettext_lazy("severity", "Critical")


def severity_label(code):
    """The label of a severity code in the active language (lazy); an unknown code is shown as it is."""
    return Severity(code).label if code in Severity.values else (code or "")


# Categories that ignore opt-outs and quiet hours.
MANDATORY_CATEGORIES = frozenset({Category.SECURITY})
URGENT_PRIORITIES = frozenset({Priority.URGENT})
