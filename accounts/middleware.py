import zoneinfo

from django.utils import timezone, translation
from django.utils.cache import patch_cache_control


class UserLanguageMiddleware:
    """Serve a signed-in user in their preferred language (LocaleMiddleware handles everyone else)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.language:
            translation.activate(user.language)
            request.LANGUAGE_CODE = user.language
        response = self.get_response(request)
        if user is not None and user.is_authenticated and user.language:
            response.headers.setdefault("Content-Language", user.language)
        return response


class UserTimezoneMiddleware:
    """Show dates and times in a signed-in user's time zone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.timezone:
            try:
                timezone.activate(zoneinfo.ZoneInfo(user.timezone))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class PrivateResponseMiddleware:
    """Nothing shown to a signed-in user is kept by a browser's or a proxy's cache: Cache-Control: private, no-store.

    Decided on the response: the API authenticates inside its views (JWT, API key), and DRF
    then sets `request.user`; a request that carries an Authorization header counts too,
    answered or refused. A Cache-Control set by the view is kept and only made stricter.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if "HTTP_AUTHORIZATION" in request.META or (user is not None and user.is_authenticated):
            patch_cache_control(response, private=True, no_store=True)
        return response
