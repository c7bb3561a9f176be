"""The probes that operations tools call: /metrics for Prometheus (readiness is in flashnotify/api_urls.py).

/metrics answers only a scraper that passes every condition configured: the bearer token
(METRICS_TOKEN) and an address inside METRICS_ALLOWED_NETWORKS. With neither set it does not
exist (404); a wrong or missing token is 401, an address outside the networks 403.
"""

import hmac
import ipaddress
import logging

from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET

from .services.monitoring import metrics_exposition

logger = logging.getLogger(__name__)


def client_address(request):
    """The caller's address: the socket's, or the one API_NUM_PROXIES trusted proxies forwarded (as DRF's throttles)."""
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        return hops[-min(proxies, len(hops))]
    return request.META.get("REMOTE_ADDR", "")


def _in_networks(address, networks):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:  # reported by check flashnotify.E010; never opens anything
            continue
    return False


def _bearer_matches(request, token):
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


@require_GET
def metrics(request):
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        raise Http404  # the site's own 404: off looks like absent
    address = client_address(request)
    if networks and not _in_networks(address, networks):
        logger.warning("metrics: refused %s (not in METRICS_ALLOWED_NETWORKS)", address)
        return HttpResponseForbidden("Forbidden.", content_type="text/plain")
    if token and not _bearer_matches(request, token):
        logger.warning("metrics: refused %s (missing or wrong bearer token)", address)
        response = HttpResponse("Unauthorized.", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_exposition()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
