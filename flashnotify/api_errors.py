"""One error shape for every API failure: {status, code, message, errors}.

`errors` maps a field (dotted for nested fields, `non_field_errors` otherwise) to its
messages; it is filled for 400s and empty otherwise. Services raise Django's
ValidationError and PermissionDenied; they are translated here, never in views.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from flashnotify.api_parsers import PayloadTooLarge
from flashnotify.error_pages import error_body
from notifications.services import IdempotencyConflict

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


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
