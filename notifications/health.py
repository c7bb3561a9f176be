"""The console's Health pages: per channel the circuit breaker, error rate and latency, and a test send.

Registered on the console site by notifications/admin.py (`admin.site.register_page`).
"""

from datetime import datetime
from datetime import timezone as dt_timezone

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.roles import console_role
from channels_app.breaker import CircuitBreaker
from channels_app.constants import Channel
from channels_app.models import PerformanceMetric
from channels_app.registry import ChannelMeta
from channels_app.selectors import channel_health
from flashnotify.charts import line_chart

from .services import TESTABLE_CHANNELS, channel_send_test

def _provider(channel):
    mixin = ChannelMeta.channels.get(channel)
    return getattr(mixin, "breaker_provider", None)


def _can_view_health(request):
    return request.user.has_perm("channels_app.view_performancemetric")


def health_index(request):
    if not _can_view_health(request):
        raise PermissionDenied
    rows = []
    for channel, label in Channel.choices:
        provider = _provider(channel)
        totals = channel_health(channel, hours=1, buckets=1)["totals"]
        rows.append({"channel": channel, "label": label, "totals": totals,
                     "breaker": CircuitBreaker(provider).snapshot() if provider else None})
    context = {**admin.site.each_context(request), "title": "Channel health", "rows": rows}
    return TemplateResponse(request, "admin/health/index.html", context)


def health_channel(request, channel):
    """One channel: breaker (with reset), error rate and latency over 24 hours, and a test send."""
    if not _can_view_health(request):
        raise PermissionDenied
    if channel not in Channel.values:
        raise Http404("No such channel.")
    provider = _provider(channel)
    is_admin = console_role(request.user) == "admin"
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "reset" and provider:
            if not is_admin:
                raise PermissionDenied
            CircuitBreaker(provider).reset()
            _log(request, f"Reset the {provider} circuit breaker.")
            messages.success(request, f"The {provider} circuit breaker is closed again.")
        elif action == "test" and channel in TESTABLE_CHANNELS:
            try:
                outcome = channel_send_test(channel=channel, user=request.user)
            except ValidationError as exc:
                messages.error(request, f"No test sent: {' '.join(exc.messages)}")
            else:
                _log(request, f"Sent a test message on {channel}: "
                              f"{'accepted ' + outcome.provider_message_id if outcome.ok else outcome.error}")
                if outcome.ok:
                    messages.success(request, f"Test message accepted by the {channel} provider: "
                                              f"{outcome.provider_message_id or 'no message id'}.")
                else:
                    messages.error(request, f"The {channel} provider did not accept the test message: "
                                            f"{outcome.error}")
        return redirect(reverse("admin:health_channel", args=[channel]))
    now = timezone.now()
    health = channel_health(channel, now=now)
    labels = [timezone.localtime(b["start"]).strftime("%H:%M") for b in health["buckets"]]
    error_chart = line_chart({"error rate %": [None if b["error_rate"] is None else b["error_rate"] * 100
                                               for b in health["buckets"]]},
                             labels=labels, unit="%", y_max=100, title=f"{channel} error rate, last 24 hours")
    latency_chart = line_chart({"p50 ms": [b["p50"] for b in health["buckets"]],
                                "p95 ms": [b["p95"] for b in health["buckets"]]},
                               labels=labels, unit=" ms", title=f"{channel} send latency per message, last 24 hours")
    context = {
        **admin.site.each_context(request), "title": f"Health: {dict(Channel.choices)[channel]}", "channel": channel,
        "breaker": CircuitBreaker(provider).snapshot() if provider else None, "provider": provider,
        "totals": health["totals"], "buckets": health["buckets"], "error_chart": error_chart,
        "latency_chart": latency_chart, "can_reset": is_admin, "can_test": channel in TESTABLE_CHANNELS,
    }
    if context["breaker"] and context["breaker"]["opened_at"]:
        context["opened_at"] = datetime.fromtimestamp(context["breaker"]["opened_at"], tz=dt_timezone.utc)
    return TemplateResponse(request, "admin/health/channel.html", context)


def _log(request, message):
    """Record a console operation on the channel's metrics in the admin history."""
    LogEntry.objects.create(
        user_id=request.user.pk, content_type_id=ContentType.objects.get_for_model(PerformanceMetric).pk,
        object_id="", object_repr="channel health", action_flag=CHANGE, change_message=message,
    )
