"""A real HTTPS contacts API for the engine's tests.

`ThreadingHTTPServer` on 127.0.0.1, wrapped in TLS with a certificate from the
test CA (optionally capped at a TLS version, optionally requiring a client
certificate). It issues OAuth 2.0 client-credentials tokens, lists contacts
with offset, cursor or next-link pagination, accepts idempotent batch
upserts, and has knobs to inject the faults the engine must survive: 429/5xx
replies, revoked tokens, stalls, and connections dropped in the middle of a
body. Everything it saw is recorded for assertions.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from tests.testbed.pki import KeyPair

Pagination = Literal["offset", "cursor", "next_link"]

TOKEN_PATH = "/oauth/token"
CONTACTS_PATH = "/contacts"
UPSERT_PATH = "/contacts:batchUpsert"


def make_contacts(count: int, *, start: datetime | None = None) -> list[object]:
    """`count` contacts, one hour apart in `updated_at`, ids c1..cN."""
    first = start or datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {
            "id": f"c{n}",
            "name": f"Person {n}",
            "email": f"person{n}@example.com",
            "updated_at": (first + timedelta(hours=n - 1)).isoformat(),
        }
        for n in range(1, count + 1)
    ]


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The offset inside a cursor from `encode_cursor`; ValueError for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor") from exc
    name, _, offset = text.partition(":")
    if name != "offset":
        raise ValueError("not a cursor")
    return int(offset)


class FakeClock:
    """A monotonic clock that only moves when told to, or when something sleeps on it."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds

    def advance(self, seconds: float) -> None:
        self.time += seconds


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    tls_version: str | None
    client_cert_subject: str | None  # the client certificate's common name, under mTLS


@dataclass
class _Reply:
    status: int
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    drop_mid_body: bool = False
    stall: float = 0.0


@dataclass
class _Fault:
    path: str
    status: int
    remaining: int
    retry_after: str | None
    body: object


@dataclass
class _Stored:
    digest: str
    reply: _Reply


class ContactsApi:
    """The server and its state. Attributes are knobs and records; change them freely.

    Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(
        self,
        server_tls: KeyPair,
        *,
        contacts: Sequence[object] = (),
        pagination: Pagination = "offset",
        page_size: int = 10,
        clock: Callable[[], float] = time.monotonic,
        client_ca: Path | None = None,
        max_tls: ssl.TLSVersion | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        # Knobs
        self.contacts: list[object] = list(contacts)
        self.pagination: Pagination = pagination
        self.page_size = page_size
        self.records_path = "data"  # dotted path of the records array in list responses
        self.link_in: Literal["body", "header"] = "body"  # where next links go
        self.absolute_links = True  # else next links are relative ("/contacts?page=2")
        self.next_link_override: str | None = None  # returned as next link on every page
        self.cursor_override: str | None = None  # returned as next cursor on every page
        self.ignore_offset = False  # always serve the first page (a broken API)
        self.files: dict[str, bytes] = {}  # served as is at /files/<name> (with auth)
        self.drop_files = False  # cut file downloads halfway, as a dropped connection
        self.client_id = "contactsync"
        self.client_secret = "client-secret-" + secrets.token_hex(8)
        self.api_key: tuple[str, str] | None = None  # (header, exact value) also accepted
        self.token_lifetime = 3600.0
        self.reject_all_tokens = False  # every bearer token gets 401, even fresh ones
        self.clock = clock  # token expiry only
        # Records
        self.requests: list[RecordedRequest] = []
        self.issued_tokens: list[str] = []
        self.token_forms: list[dict[str, str]] = []  # token requests, secret removed
        self.token_client_auth: list[str] = []  # "basic" or "post", per token request
        self.unauthorized = 0  # 401s answered on the API endpoints
        self.applied: list[object] = []  # every record applied by batch upserts
        self.upsert_batches: list[list[object]] = []
        self.replayed_keys: list[str] = []
        self.tls_failures: list[str] = []  # handshakes the server refused
        # Internals
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._faults: list[_Fault] = []
        self._drop_after_page: tuple[int, int] | None = None  # (page, times left)
        self._fail_after_apply: tuple[int, int] = (503, 0)  # (status, times left)
        self._stall: tuple[float, int] = (0.0, 0)  # (seconds, times left)
        self._idempotency: dict[str, _Stored] = {}
        self._server = _TlsServer((host, 0), self, _server_context(server_tls, client_ca, max_tls))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.host = host
        self.port: int = self._server.server_address[1]

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> ContactsApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ContactsApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def contacts_url(self) -> str:
        return self.url + CONTACTS_PATH

    @property
    def upsert_url(self) -> str:
        return self.url + UPSERT_PATH

    # -- fault injection -----------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        path: str = CONTACTS_PATH,
        body: object = None,
    ) -> None:
        """Answer the next `times` requests to `path` with `status` (and Retry-After).

        `body` is sent as JSON, or as is when it is bytes; by default an error object.
        """
        reply = {"error": "injected_fault"} if body is None else body
        with self._lock:
            self._faults.append(_Fault(path, status, times, retry_after, reply))

    def drop_after_page(self, page: int, times: int = 1_000_000) -> None:
        """Cut the connection halfway through the body of page `page + 1`, `times` times."""
        with self._lock:
            self._drop_after_page = (page, times)

    def fail_after_apply(self, status: int = 503, times: int = 1) -> None:
        """Apply the next upserts, then answer `status` as if the response got lost."""
        with self._lock:
            self._fail_after_apply = (status, times)

    def stall(self, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before answering the next `times` requests (real time)."""
        with self._lock:
            self._stall = (seconds, times)

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working, as if the provider revoked them."""
        with self._lock:
            self._tokens.clear()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- request handling (called by handler threads) --------------------------

    def handle(self, request: RecordedRequest, body: bytes) -> _Reply:
        with self._lock:
            self.requests.append(request)
            reply = self._route(request, body)
            seconds, times = self._stall
            if times > 0:
                self._stall = (seconds, times - 1)
                reply = dataclasses.replace(reply, stall=seconds)
            return reply

    def _route(self, request: RecordedRequest, body: bytes) -> _Reply:
        for fault in self._faults:
            if fault.path == request.path and fault.remaining > 0:
                fault.remaining -= 1
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return _Reply(fault.status, fault.body, headers)
        match (request.method, request.path):
            case ("POST", "/oauth/token"):
                return self._token(request, body)
            case ("GET", "/contacts"):
                return self._authenticated(request) or self._list(request)
            case ("POST", "/contacts:batchUpsert"):
                return self._authenticated(request) or self._upsert(request, body)
            case ("GET", path) if path.removeprefix("/files/") in self.files:
                content = self.files[path.removeprefix("/files/")]
                return self._authenticated(request) or _Reply(
                    200, content, drop_mid_body=self.drop_files
                )
        return _Reply(404, {"error": "not_found"})

    def _token(self, request: RecordedRequest, body: bytes) -> _Reply:
        form = dict(parse_qsl(body.decode()))
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            self.token_client_auth.append("basic")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            self.token_client_auth.append("post")
        self.token_forms.append({k: v for k, v in form.items() if k != "client_secret"})
        if form.get("grant_type") != "client_credentials":
            return _Reply(400, {"error": "unsupported_grant_type"})
        if (client_id, secret) != (self.client_id, self.client_secret):
            return _Reply(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        self._tokens[token] = self.clock() + self.token_lifetime
        self.issued_tokens.append(token)
        reply = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        return _Reply(200, reply, {"Cache-Control": "no-store"})

    def _authenticated(self, request: RecordedRequest) -> _Reply | None:
        """None when the request may proceed, else the 401 to send."""
        if self.api_key is not None:
            header, value = self.api_key
            if request.headers.get(header.lower()) == value:
                return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is not None and self.clock() < expiry and not self.reject_all_tokens:
            return None
        self.unauthorized += 1
        return _Reply(401, {"error": "invalid_token"}, {"WWW-Authenticate": "Bearer"})

    def _list(self, request: RecordedRequest) -> _Reply:
        query = request.query
        items = self.contacts
        if "updated_since" in query:
            try:
                since = datetime.fromisoformat(query["updated_since"])
            except ValueError:
                return _Reply(400, {"error": "invalid_updated_since"})
            items = [item for item in items if _updated_since(item, since)]
        style = query.get("style", self.pagination)
        limit = self.page_size
        if style == "offset":
            offset = int(query.get("offset", "0"))
            limit = int(query.get("limit", str(limit)))
        elif style == "cursor":
            try:
                offset = decode_cursor(query["cursor"]) if "cursor" in query else 0
            except ValueError:
                return _Reply(400, {"error": "invalid_cursor"})
        else:
            offset = (int(query.get("page", "1")) - 1) * limit
        if self.ignore_offset:
            offset = 0
        more = offset + limit < len(items)
        body: dict[str, object] = {}
        headers: dict[str, str] = {}
        if style == "cursor":
            next_cursor = encode_cursor(offset + limit) if more else None
            body["next_cursor"] = self.cursor_override or next_cursor
        elif style == "next_link":
            page = offset // limit + 1
            next_link = f"{CONTACTS_PATH}?{urlencode({**query, 'page': str(page + 1)})}"
            if self.absolute_links:
                next_link = self.url + next_link
            link = self.next_link_override or (next_link if more else None)
            if self.link_in == "header" and link is not None:
                headers["Link"] = f'<{link}>; rel="next"'
            elif self.link_in == "body":
                body["links"] = {"next": link}
        _put(body, self.records_path, items[offset : offset + limit])
        reply = _Reply(200, body, headers)
        if self._drop_after_page is not None:
            page, times = self._drop_after_page
            if times > 0 and offset // limit == page:
                self._drop_after_page = (page, times - 1)
                reply.drop_mid_body = True
        return reply

    def _upsert(self, request: RecordedRequest, body: bytes) -> _Reply:
        key = request.headers.get("idempotency-key")
        if not key:
            return _Reply(400, {"error": "idempotency_key_required"})
        digest = hashlib.sha256(body).hexdigest()
        stored = self._idempotency.get(key)
        if stored is not None:
            if stored.digest != digest:
                return _Reply(422, {"error": "idempotency_key_reused"})
            self.replayed_keys.append(key)
            return stored.reply
        payload = json.loads(body)
        records = payload.get("records") if isinstance(payload, dict) else None
        if not isinstance(records, list):
            return _Reply(400, {"error": "records_required"})
        self.applied.extend(records)
        self.upsert_batches.append(records)
        reply = _Reply(200, {"upserted": len(records)})
        self._idempotency[key] = _Stored(digest, reply)
        status, times = self._fail_after_apply
        if times > 0:
            self._fail_after_apply = (status, times - 1)
            return _Reply(status, {"error": "response_lost"})
        return reply


def _updated_since(item: object, since: datetime) -> bool:
    # Items without a timestamp (or not objects at all) are always listed, so
    # tests can place malformed items anywhere.
    if not isinstance(item, dict) or not isinstance(item.get("updated_at"), str):
        return True
    return datetime.fromisoformat(item["updated_at"]) >= since


def _put(body: dict[str, object], path: str, value: object) -> None:
    *parents, last = path.split(".")
    node = body
    for name in parents:
        child: dict[str, object] = {}
        node[name] = child
        node = child
    node[last] = value


def _server_context(
    pair: KeyPair, client_ca: Path | None, max_tls: ssl.TLSVersion | None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    if max_tls is not None:
        context.maximum_version = max_tls
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: ContactsApi, context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake runs here, in the connection's own thread, so a slow or
        # failing client never blocks the accept loop.
        request.settimeout(10)
        # Headers and body go out in separate writes; without this, Nagle's
        # algorithm and delayed ACKs add 40 ms to every response.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self.api._lock:
                self.api.tls_failures.append(str(exc))
            return
        try:
            _Handler(tls, client_address, self)
        except OSError:
            pass  # the client went away; nothing to answer
        finally:
            tls.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests assert on records, not on stderr

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        assert isinstance(self.connection, ssl.SSLSocket)
        peer = self.connection.getpeercert()
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers={name.lower(): value for name, value in self.headers.items()},
            tls_version=self.connection.version(),
            client_cert_subject=_common_name(peer) if peer else None,
        )
        reply = self.server.api.handle(request, body)
        if reply.stall:
            time.sleep(reply.stall)
        if isinstance(reply.body, bytes):
            payload = reply.body
        else:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.drop_mid_body:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            # A FIN without TLS close_notify, mid-body: a dropped connection.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(payload)


def _common_name(peer: Mapping[str, object]) -> str | None:
    subject = peer.get("subject")
    assert isinstance(subject, tuple)
    for rdn in subject:
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None
