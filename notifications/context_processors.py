from django.utils.functional import SimpleLazyObject

from .selectors import inbox_unread_count


def inbox(request):
    """The signed-in user's unread count for the header (cached until their inbox changes), when a page shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def unread():
        return inbox_unread_count(user.pk)


    return {"unread_count": SimpleLazyObject(unread)}
