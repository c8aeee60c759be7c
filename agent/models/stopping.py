"""Stop sequences on a text stream, for backends that overshoot them (servers that ignore `stop`,
token streamers that only notice a stop string after it is complete)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agent.parsing import truncate_at_stop


def cut_at_stop(pieces: Iterable[str], stop: list[str]) -> Iterator[str]:
    """Yield the streamed text up to, not including, the first stop sequence.

    Only the last few characters that could still begin a stop sequence are held back,
    so text streams almost as fast as it arrives. Iteration of `pieces` ends at the stop.
    """
    hold = max((len(s) for s in stop), default=1) - 1
    pending = ""
    for piece in pieces:
        pending += piece
        text, found = truncate_at_stop(pending, stop)
        if found:
            if text:
                yield text
            return
        if len(pending) > hold:
            cut = len(pending) - hold
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending
