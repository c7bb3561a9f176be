"""The site's error handlers (400, 403, 404, 500 and CSRF failures).

Under /api/ they answer in the API's one error shape; elsewhere with the site's pages.
This module imports nothing of DRF: Django imports CSRF_FAILURE_VIEW and the handlers on
their own (in system checks too), and DRF's views read REST_FRAMEWORK's dotted paths while
they are imported, which would bring flashnotify.api_errors back in half-initialised.
"""

from django.contrib import admin
from django.http import JsonResponse
from django.shortcuts import render
from django.views import defaults

from accounts.roles import console_role


def error_body(status_code, code, message, errors=None):
    return {"status": status_code, "code": code, "message": message, "errors": errors or {}}


def not_found(request, exception=None):
    """The 404 handler: the API's error shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(404, "not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def permission_denied(request, exception=None):
    """The 403 handler: the API's error shape under /api/, the console's page for a console user in the
    console (Staff on an Admin-only page: what happened and a way back), the site's styled page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(403, "permission_denied", str(exception or "")
                                       or "You do not have permission to perform this action."), status=403)
    user = getattr(request, "user", None)
    role = console_role(user) if user is not None else None
    if role and request.path.startswith(f"/{admin.site.name}/"):
        return render(request, "admin/403.html", {**admin.site.each_context(request), "role": role}, status=403)
    return defaults.permission_denied(request, exception)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: a form sent without a valid CSRF token (an old tab, cookies refused, another site).

    The API's error shape under /api/; elsewhere the site's styled, translated page, status 403.
    Django has already logged the reason (django.security.csrf); the page does not show it.
    """
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(403, "csrf_failed", f"CSRF Failed: {reason}" if reason
                                       else "CSRF Failed."), status=403)
    return render(request, "403_csrf.html", status=403)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(500, "server_error", "Internal server error."), status=500)
    return defaults.server_error(request)


def bad_request(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(400, "bad_request", "Bad request."), status=400)
    return defaults.bad_request(request, exception)
