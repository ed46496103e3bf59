"""Prefect flows that run the engine. `contact_sync` is the deployment entry point."""

from .contact_sync import contact_sync

__all__ = ["contact_sync"]
