from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self):
        from . import checks, content, notifiers, webhooks  # noqa: F401  (registers notifiers, templates, checks, receivers)
