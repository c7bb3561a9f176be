"""Who may call what: role permissions (Django groups) and API-key scopes.

A view names, per action, the Django permissions it needs (`required_perms`) and the
API-key scope it needs (`required_scopes`). An action without a scope refuses API keys.
Object-level access is done by scoping querysets to the caller, so another user's object
answers 404.
"""

from rest_framework.permissions import BasePermission

from .models import ApiKey
from .roles import is_admin


def api_key_of(request):
    return request.auth if isinstance(request.auth, ApiKey) else None


def _action(request, view):
    return getattr(view, "action", None) or request.method.lower()


class HasRolePermission(BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        perms = getattr(view, "required_perms", {}).get(_action(request, view), ())
        return request.user.has_perms(perms)


class HasKeyScope(BasePermission):
    message = "This API key's scopes do not allow this."

    def has_permission(self, request, view):
        key = api_key_of(request)
        if key is None:
            return True
        scope = getattr(view, "required_scopes", {}).get(_action(request, view))
        if scope is None:
            self.message = "API keys cannot be used here; sign in as a user."
            return False
        scopes = scope if isinstance(scope, (tuple, list)) else (scope,)
        return any(key.has_scope(s) for s in scopes)


class NotApiKey(BasePermission):
    message = "API keys cannot be used here; sign in as a user."

    def has_permission(self, request, view):
        return api_key_of(request) is None


DEFAULT = [HasRolePermission, HasKeyScope]


class IsAdministrator(BasePermission):
    """Administrators only (accounts.roles.is_admin), whatever permissions a role was given."""

    message = "Only an administrator may do this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and is_admin(request.user))
