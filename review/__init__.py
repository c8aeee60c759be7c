"""Review: the SQLite trajectory store, MM-Traj import/export and the review CLI."""

import review.schema  # noqa: F401 — registers the review tables with core.db, once
from review.errors import StoreError
from review.store import REJECT_REASONS, STATUSES, Detail, Event, Filters, ImageRef, Page, Row, Store

__all__ = ["REJECT_REASONS", "STATUSES", "Detail", "Event", "Filters", "ImageRef", "Page", "Row", "Store",
           "StoreError"]
