"""One error shape for every API failure: {status, code, message, errors}.

`errors` maps a field (dotted for nested fields, `non_field_errors` otherwise) to its
messages; it is filled for 400s and empty otherwise. Services raise Django's
ValidationError and PermissionDenied; they are translated here, never in views.
"""

import json
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from notifications.services import IdempotencyConflict

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    """JSON bodies up to DATA_UPLOAD_MAX_MEMORY_SIZE; a larger one is 413, a malformed one 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if request is not None and limit is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise exceptions.ParseError("Invalid Content-Length header.")
            if length > limit:
                raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}")
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.")


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _flatten(detail, prefix=""):
    """DRF's nested error detail → {"a.0.b": [messages]}."""
    flat = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(detail, list) and detail and all(not isinstance(item, (dict, list)) for item in detail):
        flat[prefix or "non_field_errors"] = [str(item) for item in detail]
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if value:
                flat.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
    elif detail:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def error_body(status_code, code, message, errors=None):
    return {"status": status_code, "code": code, "message": message, "errors": errors or {}}


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, IdempotencyConflict):
        exc = Conflict(str(exc), code="idempotency_conflict")
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(detail)
        first = next(iter(errors.values()), ["Invalid input."])[0]
        body = error_body(response.status_code, "invalid", first if len(errors) == 1 else "Invalid input.", errors)
    else:
        code, message = getattr(exc, "default_code", "error"), str(detail or "")
        if isinstance(detail, dict):  # simplejwt: {"detail", "code", "messages"}
            message = str(detail.get("detail", message))
            code = str(detail.get("code", code))
        elif isinstance(detail, exceptions.ErrorDetail):
            code = detail.code or code
        body = error_body(response.status_code, code, message)
    response.data = body
    return response


def not_found(request, exception=None):
    """The 404 handler: the API's error shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(404, "not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def permission_denied(request, exception=None):
    """The 403 handler: the API's error shape under /api/, the site's styled page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(403, "permission_denied", str(exception or "")
                                       or "You do not have permission to perform this action."), status=403)
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
