"""What the console's admin modules share."""

from django.contrib import admin


class ReadOnly:
    """History: visible, never edited by hand (no add, change or delete, whoever asks, a superuser too). For a
    ModelAdmin (`ReadOnlyAdmin`) or an inline."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnly, admin.ModelAdmin):
    """A console list of history (deliveries, metrics, inbox, ledger, text messages received)."""
