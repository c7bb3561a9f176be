"""The CAP 1.2 feed's doors: /cap/ (the Atom index) and /cap/<notification id>.xml (one CAP document).

Readable without signing in for the incidents an operator marked public; everything else answers 404 to
the public, exactly as a notification that does not exist (no existence leak). Signed-in console users
(session) and API clients (token or API key) with `notifications.view_notification` read every incident.
DRF views for the API's authentication and throttles; not part of the API schema.
"""

import logging

from django.http import Http404, HttpResponse
from django.urls import reverse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from accounts.permissions import api_key_of

from .services.cap import (
    CAP_CONTENT_TYPE, cap_document_bytes, cap_feed, cap_feed_notifications, cap_notifications, cap_reader_sees_all,
)

logger = logging.getLogger(__name__)


class AnyAccept(BaseContentNegotiation):
    """The documents are XML whatever the client accepts (a signage client may send `Accept: application/xml`);
    errors keep the API's JSON shape."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class CapView(APIView):
    permission_classes = [AllowAny]
    content_negotiation_class = AnyAccept
    schema = None  # not the API: no place in the OpenAPI schema

    def sees_all(self, request):
        return cap_reader_sees_all(request.user, api_key_of(request))

    @staticmethod
    def private(response, sees_all):
        # What only a signed-in reader may see must not be kept by a shared cache.
        response["Cache-Control"] = "private, no-store" if sees_all else "public, max-age=30"
        response["Vary"] = "Authorization, Cookie"
        return response


class CapFeedView(CapView):
    def get(self, request):
        sees_all = self.sees_all(request)
        feed = cap_feed(cap_feed_notifications(sees_all=sees_all),
                        feed_url=request.build_absolute_uri(reverse("cap-feed")),
                        document_url=lambda n: request.build_absolute_uri(reverse("cap-document", args=[n.pk])))
        response = HttpResponse(content_type=f"{feed.content_type}")
        feed.write(response, "utf-8")
        return self.private(response, sees_all)


class CapDocumentView(CapView):
    def get(self, request, notification_id):
        sees_all = self.sees_all(request)
        notification = cap_notifications(sees_all=sees_all).filter(pk=notification_id).first()
        if notification is None:
            raise Http404  # unknown, not an alert, or not public: one answer
        response = HttpResponse(cap_document_bytes(notification), content_type=f"{CAP_CONTENT_TYPE}; charset=utf-8")
        logger.info("CAP document of notification %s served", notification.pk,
                    extra={"notification_id": notification.pk, "public": not sees_all})
        return self.private(response, sees_all)
