"""The one exception the evaluation package raises for bad input: a form, a flag, a benchmark's files, a run id.

Its message is one line a person can act on; the tab shows it as a warning (`core.ui.wire`) and the CLI as
`error: ...` (`core.cli.run_main`).
"""

from core.errors import UserError


class EvalError(UserError):
    """A refused benchmark, run or form; nothing stored was changed."""
