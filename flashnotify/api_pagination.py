from rest_framework.pagination import CursorPagination


def cursor_pagination(ordering, page_size=50):
    """A cursor pagination class ordered by `ordering`; clients may ask for up to 200 per page."""
    return type("CursorPagination", (CursorPagination,), {
        "ordering": ordering, "page_size": page_size, "page_size_query_param": "page_size", "max_page_size": 200})
