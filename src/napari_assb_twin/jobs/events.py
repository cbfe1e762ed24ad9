"""The progress events of the use cases: :mod:`napari_assb_twin.events`, re-exported here.

The events live on the ground floor so that core modules (``stats``, ``validate``) yield them
without importing the use-case layer (importing ``jobs.events`` runs ``jobs/__init__``).
"""

from __future__ import annotations

from ..events import JobProgress, relay, run_job

__all__ = ["JobProgress", "relay", "run_job"]
