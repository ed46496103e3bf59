"""ContactSync: secure contact-data synchronisation on Kubernetes with Prefect 3."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("contactsync")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
