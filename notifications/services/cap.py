"""The CAP 1.2 feed (OASIS Common Alerting Protocol): one CAP document per emergency alert, update and
all-clear, and the Atom index of the active ones, for desktop-alert and digital-signage clients.

Reads only. What a reader may see: anyone, the notifications of incidents the operator marked public;
a signed-in console user, or an API client with `notifications.view_notification`, every incident.
"""

from datetime import timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.feedgenerator import Atom1Feed
from django.utils.translation import gettext as _
from lxml import etree

from accounts.roles import console_role
from channels_app.constants import Severity

from ..engine.incidents import incident_original
from ..models import IncidentTemplate, Notification

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_CONTENT_TYPE = "application/cap+xml"
ThreadRole = Notification.ThreadRole

CAP_STATUS = {Notification.AlertStatus.ACTUAL: "Actual", Notification.AlertStatus.EXERCISE: "Exercise",
              Notification.AlertStatus.TEST: "Test"}
CAP_MSG_TYPE = {ThreadRole.ALERT: "Alert", ThreadRole.UPDATE: "Update", ThreadRole.ALL_CLEAR: "Cancel"}
CAP_SEVERITY = {Severity.CRITICAL: "Extreme", Severity.HIGH: "Severe", Severity.MODERATE: "Moderate",
                Severity.LOW: "Minor"}
Kind = IncidentTemplate.Kind
# The template's kind → CAP <category> (and how sure we are of the event, <certainty>).
CAP_CATEGORY = {Kind.ACTIVE_THREAT: "Security", Kind.SEVERE_WEATHER: "Met", Kind.FIRE_EVACUATION: "Fire",
                Kind.CAMPUS_CLOSURE: "Safety", Kind.UTILITY_OUTAGE: "Infra", Kind.ALL_CLEAR: "Safety",
                Kind.OTHER: "Other"}
CAP_CERTAINTY = {Kind.SEVERE_WEATHER: "Likely"}
# The site's languages as CAP <language> codes (RFC 3066).
CAP_LANGUAGES = {"en": "en-US", "fr": "fr-CA"}
# What never appears in the feed: an alert still waiting for approval, or one cancelled.
UNPUBLISHED_STATUSES = (Notification.Status.AWAITING_APPROVAL, Notification.Status.CANCELLED)


# --- who reads what ------------------------------------------------------------------------

def cap_reader_sees_all(user, api_key=None):
    """A signed-in console user, or an API client with view_notification (and, for a key, a read scope)."""
    if user is None or not user.is_authenticated:
        return False
    if api_key is not None:
        return user.has_perm("notifications.view_notification") and api_key.has_scope("read_deliveries")
    return console_role(user) is not None or user.has_perm("notifications.view_notification")


def cap_notifications(*, sees_all):
    """The notifications that have a CAP document for this reader: emergency alerts in an incident, not
    waiting for approval nor cancelled; for the public, only those of public incidents."""
    notifications = (Notification.objects.filter(notifier=Notification.EMERGENCY_NOTIFIER, incident__isnull=False)
                     .exclude(status__in=UNPUBLISHED_STATUSES).select_related("incident", "template"))
    return notifications if sees_all else notifications.filter(incident__public=True)


def cap_feed_notifications(*, sees_all, now=None):
    """The Atom index's entries: every document of the open incidents and of those closed within
    CAP_FEED_CLOSED_HOURS, newest first."""
    now = now or timezone.now()
    since = now - timedelta(hours=settings.CAP_FEED_CLOSED_HOURS)
    return (cap_notifications(sees_all=sees_all)
            .filter(Q(incident__closed_at__isnull=True) | Q(incident__closed_at__gte=since))
            .order_by("-created_at", "-id"))


# --- one CAP document ----------------------------------------------------------------------

def cap_identifier(notification):
    """Stable and unique for this sender: the notification's id."""
    return f"flashnotify-{notification.pk}"


def cap_datetime(moment):
    """CAP's dateTime: seconds and an explicit offset ("2026-12-05T06:43:29+00:00"), never "Z"."""
    return moment.astimezone(dt_timezone.utc).replace(microsecond=0).isoformat()


def cap_reference(notification):
    return f"{settings.CAP_SENDER},{cap_identifier(notification)},{cap_datetime(notification.created_at)}"


def _kind(notification, original):
    template = notification.template or (original.template if original else None)
    return template.kind if template else None


def _sub(parent, name, text=None):
    element = etree.SubElement(parent, f"{{{CAP_NAMESPACE}}}{name}")
    if text is not None:
        element.text = str(text)
    return element


def cap_document(notification):
    """The CAP 1.2 <alert> of `notification` (an emergency alert, update or all-clear) as an lxml element."""
    incident = notification.incident
    original = incident_original(incident.pk)
    role = notification.thread_role or ThreadRole.ALERT
    kind = _kind(notification, original)
    alert = etree.Element(f"{{{CAP_NAMESPACE}}}alert", nsmap={None: CAP_NAMESPACE})
    _sub(alert, "identifier", cap_identifier(notification))
    _sub(alert, "sender", settings.CAP_SENDER)
    _sub(alert, "sent", cap_datetime(notification.created_at))
    _sub(alert, "status", CAP_STATUS.get(notification.alert_status, "Actual"))
    _sub(alert, "msgType", CAP_MSG_TYPE.get(role, "Alert"))
    if incident.public:
        _sub(alert, "scope", "Public")
    else:
        _sub(alert, "scope", "Restricted")
        _sub(alert, "restriction", settings.CAP_RESTRICTION)
    if role != ThreadRole.ALERT and original is not None and original.pk != notification.pk:
        _sub(alert, "references", cap_reference(original))
    _sub(alert, "incidents", f"flashnotify-incident-{incident.pk}")
    severity = CAP_SEVERITY.get((notification.data or {}).get("severity"), "Unknown")
    for language in _languages(notification):
        title, body = notification.content_for(language)
        with translation.override(language):
            info = _sub(alert, "info")
            _sub(info, "language", CAP_LANGUAGES.get(language, language))
            _sub(info, "category", CAP_CATEGORY.get(kind, "Safety"))
            _sub(info, "event", _event(role, kind))
            if role == ThreadRole.ALL_CLEAR:
                _sub(info, "responseType", "AllClear")
            _sub(info, "urgency", "Past" if role == ThreadRole.ALL_CLEAR else "Immediate")
            _sub(info, "severity", "Minor" if role == ThreadRole.ALL_CLEAR else severity)
            _sub(info, "certainty", CAP_CERTAINTY.get(kind, "Observed"))
            _sub(info, "senderName", settings.CAP_SENDER_NAME)
            _sub(info, "headline", title)
            _sub(info, "description", body)
            area = _sub(info, "area")
            _sub(area, "areaDesc", settings.CAP_AREA_DESC)
    return alert


def _languages(notification):
    """English, then each language of the site the notification has a translation in."""
    return ["en"] + [code for code, _name in settings.LANGUAGES
                     if code != "en" and (notification.translations or {}).get(code)]


def _event(role, kind):
    if role == ThreadRole.ALL_CLEAR:
        return str(Kind.ALL_CLEAR.label)
    if kind:
        return str(Kind(kind).label)
    return _("Emergency alert")


def cap_document_bytes(notification):
    return etree.tostring(cap_document(notification), xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- the Atom index ------------------------------------------------------------------------

def cap_feed(notifications, *, feed_url, document_url):
    """The Atom index of `notifications`: one entry per CAP document (`document_url(notification)`)."""
    feed = Atom1Feed(title=_("%(sender)s emergency alerts (CAP 1.2)") % {"sender": settings.CAP_SENDER_NAME},
                     link=feed_url, feed_url=feed_url, id=feed_url, language="en",
                     description=_("Active emergency alerts, their updates and all-clears, as CAP 1.2 documents."))
    statuses = dict(Notification.AlertStatus.choices)
    roles = dict(ThreadRole.choices)
    for notification in notifications:
        role = notification.thread_role or ThreadRole.ALERT
        label = str(roles[role])
        if notification.alert_status != Notification.AlertStatus.ACTUAL:
            label = f"{str(statuses[notification.alert_status]).upper()} · {label}"
        url = document_url(notification)
        # Atom wants an IRI as an entry's id: the document's address (its CAP identifier is in the document).
        feed.add_item(title=f"{label}: {notification.title}", link=url, unique_id=url,
                      description=notification.body, pubdate=notification.created_at,
                      updateddate=notification.created_at, categories=[CAP_MSG_TYPE.get(role, "Alert")],
                      enclosures=[])
    return feed
