"""Student pages. Every view checks who is asking; signed-link views check the signature."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.signing import BadSignature, SignatureExpired, TimestampSigner
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from channels_app.models import InboxMessage

from . import inbox

ACK_LINK_MAX_AGE = 7 * 24 * 3600
UNSUBSCRIBE_LINK_MAX_AGE = 365 * 24 * 3600


@login_required
def inbox_list(request):
    messages = InboxMessage.objects.filter(recipient=request.user).select_related("notification")
    page = Paginator(messages, 20).get_page(request.GET.get("page"))
    return render(request, "notifications/inbox.html", {"page": page})


@login_required
def inbox_detail(request, notification_id):
    message = get_object_or_404(InboxMessage.objects.select_related("notification"),
                                recipient=request.user, notification_id=notification_id)
    inbox.message_mark_read(message)
    if request.method == "POST" and "acknowledge" in request.POST:
        inbox.message_acknowledge(message)
    return render(request, "notifications/inbox_detail.html", {"message": message})


def _unsign(token, name, max_age):
    try:
        user_id, notification_id = TimestampSigner(salt=f"flashnotify.{name}").unsign(token, max_age=max_age).split(":")
        return int(user_id), int(notification_id), ""
    except SignatureExpired:
        return None, None, "expired"
    except (BadSignature, ValueError):
        return None, None, "invalid"


@require_http_methods(["GET", "POST"])
def acknowledge(request, token):
    """Acknowledge from an email link, without signing in. GET shows a button; POST acknowledges."""
    user_id, notification_id, problem = _unsign(token, "acknowledge", ACK_LINK_MAX_AGE)
    message = None
    if not problem:
        message = InboxMessage.objects.filter(recipient_id=user_id, notification_id=notification_id).first()
        problem = "" if message else "invalid"
    if problem:
        return render(request, "notifications/link_problem.html", {"problem": problem}, status=400)
    if request.method == "POST":
        inbox.message_acknowledge(message)
    return render(request, "notifications/acknowledge.html", {"message": message, "token": token})


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs without our CSRF cookie; the signed token authorises.
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    user_id, notification_id, problem = _unsign(token, "unsubscribe", UNSUBSCRIBE_LINK_MAX_AGE)
    if problem:
        return render(request, "notifications/link_problem.html", {"problem": problem}, status=400)
    from .models import Notification

    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        return render(request, "notifications/link_problem.html", {"problem": "invalid"}, status=400)
    done = False
    if request.method == "POST":
        from .preferences import preference_set

        preference_set(user_id=user_id, category=notification.category, channel="email", enabled=False)
        done = True
    return render(request, "notifications/unsubscribe.html",
                  {"notification": notification, "token": token, "done": done, "now": timezone.now()})
