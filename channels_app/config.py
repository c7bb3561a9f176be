"""What each channel needs from settings. Problems surface as system checks (channels_app/checks.py)."""

from django.conf import settings

from .constants import Channel
from .registry import ConfigMeta


class ChannelConfig(metaclass=ConfigMeta):
    channel = None
    required = ()  # settings that must be set
    one_of = ()  # groups of settings of which at least one must be set
    hint = ""

    @classmethod
    def problems(cls):
        found = [f"{name} is not set" for name in cls.required if not getattr(settings, name, "")]
        for group in cls.one_of:
            if not any(getattr(settings, name, "") for name in group):
                found.append(f"one of {' or '.join(group)} must be set")
        return found

    @classmethod
    def missing_settings(cls):
        """The settings still to set, for a person to read: ["TWILIO_ACCOUNT_SID", "A or B"]."""
        missing = [name for name in cls.required if not getattr(settings, name, "")]
        missing += [" or ".join(group) for group in cls.one_of
                    if not any(getattr(settings, name, "") for name in group)]
        return missing

    @classmethod
    def is_configured(cls):
        return not cls.problems()


class EmailConfig(ChannelConfig):
    channel = Channel.EMAIL
    required = ("EMAIL_BACKEND", "DEFAULT_FROM_EMAIL")
    hint = "Set EMAIL_BACKEND (SMTP by default, or an anymail backend) and DEFAULT_FROM_EMAIL."


class SMSConfig(ChannelConfig):
    channel = Channel.SMS
    required = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    one_of = (("TWILIO_MESSAGING_SERVICE_SID", "TWILIO_FROM_NUMBER"),)
    hint = "Set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER."


class PushConfig(ChannelConfig):
    channel = Channel.PUSH
    required = ("VAPID_PUBLIC_KEY", "VAPID_PRIVATE_KEY", "VAPID_SUBJECT")
    hint = "Generate a key pair with `python manage.py generate_vapid_keys` and set VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY."


class InboxConfig(ChannelConfig):
    channel = Channel.INBOX
