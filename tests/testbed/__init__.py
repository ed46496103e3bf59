"""The ContactSync test bed: real servers on loopback for integration tests.

See README.md ("The test bed") for what runs and how to start it by hand.
"""

from .bed import TestBed

__all__ = ["TestBed"]
