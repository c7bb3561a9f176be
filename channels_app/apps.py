from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChannelsConfig(AppConfig):
    name = "channels_app"
    verbose_name = _("Channels")

    def ready(self):
        # Registers notifiers, template sets, checks and signal receivers.
        from . import checks, content, notifiers, webhooks  # noqa: F401
