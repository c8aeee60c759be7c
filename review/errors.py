"""The one exception the review package raises for bad input: its message is one line a user can act on."""


class StoreError(Exception):
    """Refused input or an impossible action; nothing stored was changed."""
