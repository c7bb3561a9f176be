"""Where web push may post: the browsers' push services, never an address inside our network.

A subscription's endpoint comes from the browser, that is from whoever is signed in. The worker
POSTs to it with our VAPID signature, and the push service's answer (201 kept, 404/410 deleted)
is visible to the subscriber: without these checks an endpoint is a way to make the worker call
internal services and learn how they answer. `endpoint_problem` is asked twice: when a
subscription is saved, and again just before each push, on the address the host resolves to then
(a name may resolve to something else later: DNS rebinding).
"""

import hashlib
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.module_loading import import_string

# The push services of the browsers we support; PUSH_SERVICE_HOSTS adds to them. "*." matches
# any name below the domain (not the domain itself).
PUSH_SERVICE_HOSTS = (
    "fcm.googleapis.com",  # Google (Chrome, Edge on Android, Opera, Samsung Internet)
    "updates.push.services.mozilla.com",  # Mozilla autopush (Firefox)
    "*.push.services.mozilla.com",
    "*.push.apple.com",  # Apple (Safari)
    "*.notify.windows.com",  # Microsoft WNS (Edge on Windows)
)
MAX_ENDPOINT_LENGTH = 1000


def push_service_hosts():
    return PUSH_SERVICE_HOSTS + tuple(settings.PUSH_SERVICE_HOSTS)


def host_is_push_service(host):
    host = host.lower().rstrip(".")
    for allowed in push_service_hosts():
        allowed = allowed.lower()
        if allowed.startswith("*.") and host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
            return True
        if host == allowed:
            return True
    return False


def resolve_host(host, port):
    """The addresses `host` resolves to (the default PUSH_HOST_RESOLVER)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def address_is_public(address):
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _is_ip_literal(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def endpoint_problem(endpoint):
    """Why web push must not post to `endpoint`, or "" when it may. Resolves the host (DNS)."""
    try:
        parts = urlsplit(endpoint or "")
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "the endpoint is not a URL"
    if settings.PUSH_ALLOW_HTTP_ENDPOINTS:  # tests only: local push services on http://127.0.0.1
        return "" if parts.scheme in ("http", "https") and host else "the endpoint is not an http(s) URL"
    if parts.scheme != "https" or not host:
        return "the endpoint is not an https URL"
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        return "the endpoint is too long"
    if parts.username or parts.password:
        return "the endpoint carries credentials"
    if _is_ip_literal(host):
        return "the endpoint's host is an IP address, not a push service"
    if not host_is_push_service(host):
        return "the endpoint's host is not a browser's push service"
    try:
        addresses = import_string(settings.PUSH_HOST_RESOLVER)(host, port or 443)
    except (OSError, UnicodeError):
        return "the endpoint's host does not resolve"
    if not addresses:
        return "the endpoint's host does not resolve"
    if not all(address_is_public(address) for address in addresses):
        return "the endpoint's host resolves to a private or reserved address"
    return ""


def endpoint_summary(endpoint):
    """What staff and logs may see of an endpoint (a bearer capability): its host and a short hash."""
    try:
        host = urlsplit(endpoint).hostname or "?"
    except ValueError:
        host = "?"
    return f"{host} #{hashlib.sha256(endpoint.encode()).hexdigest()[:8]}"
