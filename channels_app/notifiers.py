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
    # Only what asks for an acknowledgement escalates (an exam room change, a form to confirm): unacknowledged
    # after 4 hours, a push; 4 hours later a text message; each within the student's preferences (SMS is off
    # by default for academic categories) and quiet hours. Email and the inbox are the first send.
    escalation = (Channel.EMAIL, Channel.PUSH, Channel.SMS)
    escalation_delay = timedelta(hours=4)


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


@track_performance
class OnDutyNotifier(PushNotificationMixin, SMSMixin, EmailMixin, ArchiveMixin, Notifier):
    """Alerts to the operators on duty (a check-in reply asking for help). Made by FlashNotify, not sent by
    anyone: not an emergency alert itself (no incident, ledger or approval), mandatory, on every channel."""

    key = "on_duty"
    label = _("Operators on duty")
    categories = (Category.SECURITY,)
    internal = True
