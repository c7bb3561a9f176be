from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .registry import ConfigMeta, NotificationMeta
from .webhooks import anymail_webhook_secret, configured_esp


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


@register(Tags.security, deploy=True)
def check_receipts_and_push_endpoints(app_configs, **kwargs):
    """Test-only escapes and unauthenticated receipts have no place in production."""
    errors = []
    if settings.PUSH_ALLOW_HTTP_ENDPOINTS and not settings.DEBUG:
        errors.append(Error(
            "PUSH_ALLOW_HTTP_ENDPOINTS is on while DEBUG is off.",
            hint="Unset PUSH_ALLOW_HTTP_ENDPOINTS: it lets any signed-in user make the workers post to any "
                 "address, the site's own network included. It exists for tests with local push services.",
            id="channels_app.E001",
        ))
    esp = configured_esp()
    if esp and not anymail_webhook_secret():
        errors.append(Error(
            f"EMAIL_BACKEND sends through {esp} but ANYMAIL_WEBHOOK_SECRET is not set.",
            hint=f"Set ANYMAIL_WEBHOOK_SECRET to a random user:password and give the ESP "
                 f"https://user:password@<site>/webhooks/anymail/{esp}/tracking/; until then its receipts are refused.",
            id="channels_app.E002",
        ))
    return errors
