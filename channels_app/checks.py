from django.core.checks import Tags, Warning, register

from .registry import ConfigMeta, NotificationMeta


# A deploy check: on a developer's machine SMS and push are usually unconfigured.
@register(Tags.compatibility, deploy=True)
def check_channel_configuration(app_configs, **kwargs):
    """A channel that a notifier uses but that is not configured fails its deliveries: say so at start."""
    used = {channel for notifier in NotificationMeta.registry.values() for channel in notifier.channels}
    warnings = []
    for channel, config in sorted(ConfigMeta.registry.items()):
        problems = config.problems()
        if channel in used and problems:
            warnings.append(Warning(
                f"The {channel} channel is not configured: {'; '.join(problems)}.",
                hint=config.hint + " Until then its deliveries fail with this reason.",
                id=f"channels_app.W{ {'email': 1, 'sms': 2, 'push': 3, 'inbox': 4}[channel]:03d}",
            ))
    return warnings
