"""The concrete notifiers, composed from channel mixins."""

from datetime import timedelta

from django.utils.translation import gettext_lazy as _

from .base import Notifier
from .constants import Category, Channel
from .decorators import track_performance
from .mixins import ArchiveMixin, EmailMixin, PushNotificationMixin, SMSMixin


@track_performance
class AcademicNotifier(EmailMixin, PushNotificationMixin, SMSMixin, ArchiveMixin, Notifier):
    """Course announcements, deadline reminders, grade releases and timetable changes."""

    key = "academic"
    label = _("Academic")
    categories = (Category.ANNOUNCEMENT, Category.DEADLINE, Category.GRADE, Category.TIMETABLE,
                  Category.ADMINISTRATIVE)
    fallback = {Channel.PUSH: Channel.EMAIL, Channel.SMS: Channel.EMAIL}
    # Only what asks for an acknowledgement escalates (an exam room change, a document to sign): the next
    # day a push, the day after a text message, each within the student's preferences and quiet hours.
    escalation = (Channel.EMAIL, Channel.PUSH, Channel.SMS)
    escalation_delay = timedelta(hours=24)


@track_performance
class SecurityNotifier(PushNotificationMixin, SMSMixin, EmailMixin, ArchiveMixin, Notifier):
    """Security and emergency alerts: they must carry a severity, and must be acknowledged."""

    key = "security"
    label = _("Security and emergency")
    categories = (Category.SECURITY,)
    required_fields = ("severity",)
    fallback = {Channel.PUSH: Channel.SMS, Channel.SMS: Channel.EMAIL}
    escalation = (Channel.PUSH, Channel.SMS, Channel.EMAIL)
    escalation_delay = timedelta(minutes=10)
    requires_ack = True
