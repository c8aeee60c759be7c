"""What a page showed as notices (gr.Info, gr.Warning) during a gradio_client call, as the client received them."""

from __future__ import annotations

from typing import Any


def notices(job: Any) -> list[str]:
    """The notices of a finished `client.submit(...)` job, in order."""
    from gradio_client.utils import StatusUpdate

    found, updates = [], job.communicator.updates
    while not updates.empty():
        update = updates.get_nowait()
        if isinstance(update, StatusUpdate) and update.log:
            found.append(update.log[0])
    return found
