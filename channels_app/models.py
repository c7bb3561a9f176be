from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .push_hosts import endpoint_summary


class PushSubscription(models.Model):
    """One browser of a user, subscribed to web push (the PushSubscription of the Push API)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions")
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200, help_text=_("The browser's public key, base64url."))
    auth = models.CharField(max_length=100, help_text=_("The browser's auth secret, base64url."))
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("push subscription")
        verbose_name_plural = _("push subscriptions")

    def __str__(self):
        return f"{self.user} — {self.endpoint_summary}"

    @property
    def endpoint_summary(self):
        """The push service's host and a short hash: the endpoint itself is a bearer capability."""
        return endpoint_summary(self.endpoint)

    def as_subscription_info(self):
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


class PerformanceMetric(models.Model):
    """Timing and outcome of one operation of a notifier on a channel (a batch of items)."""

    notifier = models.CharField(max_length=50)
    channel = models.CharField(max_length=10, blank=True)
    operation = models.CharField(max_length=50)
    items = models.PositiveIntegerField(default=1)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    duration_ms = models.FloatField()
    ok = models.BooleanField(default=True)
    error = models.CharField(max_length=300, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-recorded_at"]
        indexes = [models.Index(fields=["channel", "operation", "-recorded_at"], name="metric_channel_recent")]
        verbose_name = _("performance metric")
        verbose_name_plural = _("performance metrics")

    def __str__(self):
        return f"{self.notifier}.{self.channel}.{self.operation} {self.duration_ms:.1f} ms"
