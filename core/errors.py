"""The one base of every refusal a user can act on.

A `UserError`'s message is one line that says what was wrong and what to do; nothing stored changed.
Tabs show it as a warning and leave the page as it was (`core.ui.wire`); CLIs print it and exit 2
(`core.cli.run_main`). Anything else that escapes is a bug: logged in full, shown as one line.
"""


class UserError(Exception):
    """Refused input or an impossible action; the message is one line a person can act on."""
