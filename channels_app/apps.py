from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self):
        from . import checks, notifiers, webhooks  # noqa: F401  (registers notifiers, checks, receivers)
