from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self):
        # Registers notifiers, template sets, checks and signal receivers.
        from . import checks, content, notifiers, webhooks  # noqa: F401
