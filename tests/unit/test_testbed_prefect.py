"""The bed's Prefect client sends a request again while the server answers 503
(SQLite busy), with the same body, and gives the last answer up when it stays."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from tests.testbed import prefect


class Busy(BaseHTTPRequestHandler):
    busy_for: ClassVar[int] = 0  # answers of 503 before a 200
    bodies: ClassVar[list[bytes]] = []  # what each request carried

    def do_POST(self) -> None:
        Busy.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        status = 503 if len(Busy.bodies) <= Busy.busy_for else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(prefect._RetryBusy, "PAUSE", 0.001)
    Busy.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=5, transport=prefect._RetryBusy())


def test_a_busy_answer_is_retried_with_the_same_body(server: str) -> None:
    Busy.busy_for = 2
    with client(server) as api:
        assert api.post("/x", json={"a": 1}).status_code == 200
    assert Busy.bodies == [b'{"a":1}'] * 3


def test_a_server_that_stays_busy_gets_its_503_back(server: str) -> None:
    Busy.busy_for = 100
    with client(server) as api:
        assert api.post("/x", json={}).status_code == 503
    assert len(Busy.bodies) == prefect._RetryBusy.ATTEMPTS
