from django.utils.functional import SimpleLazyObject

from .models import InboxMessage


def inbox(request):
    """The signed-in user's unread count for the header: one query, only when a page shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def unread():
        return InboxMessage.objects.filter(recipient=user, read_at__isnull=True).count()


    return {"unread_count": SimpleLazyObject(unread)}
