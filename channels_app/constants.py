"""The engine's vocabulary: channels, categories and priorities.

Kept in the lowest layer so every app (and every notifier) speaks the same words.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


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


# Categories that ignore opt-outs and quiet hours.
MANDATORY_CATEGORIES = frozenset({Category.SECURITY})
URGENT_PRIORITIES = frozenset({Priority.URGENT})
