"""Shared fixtures. The real test bed starts once per session, and only when a
test asks for it: pure-logic tests run without any server."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from types import FrameType

import pytest
from kubernetes import client

from tests.testbed import TestBed


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into the same clean unwinding as Ctrl-C, so session
    # teardown stops every server and removes the temp dir.
    raise KeyboardInterrupt


@pytest.fixture(scope="session")
def bed() -> Iterator[TestBed]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    bed = TestBed()
    try:
        yield bed.start()
    finally:
        # A second signal must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bed.stop()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def kube_admin(bed: TestBed) -> Iterator[client.ApiClient]:
    with bed.kube.api_client() as api:
        yield api


@pytest.fixture
def namespace(kube_admin: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
