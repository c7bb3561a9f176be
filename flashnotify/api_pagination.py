from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

MAX_BIGINT = 2**63 - 1


class CheckedCursorPagination(CursorPagination):
    """Cursor pagination that refuses a forged cursor (404) instead of passing its position to the database."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        field = self._model._meta.get_field(ordering.lstrip("-"))
        try:
            value = field.to_python(cursor.position)
            if isinstance(field, models.DateTimeField) and value is not None:
                if timezone.is_naive(value):
                    value = timezone.make_aware(value, dt_timezone.utc)
                value = value.astimezone(dt_timezone.utc)
            elif isinstance(field, (models.IntegerField, models.AutoField)) and abs(value) > MAX_BIGINT:
                raise ValueError("out of range")
            elif isinstance(value, str) and "\x00" in value:
                raise ValueError("NUL character")
        except (ValidationError, ValueError, TypeError, OverflowError):
            raise NotFound(self.invalid_cursor_message)
        return cursor._replace(position=str(value.isoformat() if hasattr(value, "isoformat") else value))


def cursor_pagination(ordering, page_size=50):
    """A cursor pagination class ordered by `ordering`; clients may ask for up to 200 per page."""
    return type("CursorPagination", (CheckedCursorPagination,), {"ordering": ordering, "page_size": page_size})
