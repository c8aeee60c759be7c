"""The one exception the review package raises for bad input: its message is one line a user can act on."""

from core.errors import UserError


class StoreError(UserError):
    """Refused input or an impossible action; nothing stored was changed."""
