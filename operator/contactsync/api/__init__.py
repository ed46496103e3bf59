"""The ContactSync API: pydantic models of the custom resource, the one source
of truth for the CRD schema, the operator and the engine."""

from .spec import ContactSync, ContactSyncSpec

__all__ = ["ContactSync", "ContactSyncSpec"]
