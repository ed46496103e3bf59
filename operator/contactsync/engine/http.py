"""The engine's one way to speak HTTP.

TLS is always verified, only https:// URLs are accepted, requests carry an
OAuth 2.0 client-credentials token or an API key, and failures are retried
with bounded, jittered backoff. Nothing here logs or raises with a header, a
token, a secret or a body: log lines carry method, host, path (no query),
status, attempt and duration only.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, BinaryIO, Literal, Self
from urllib.parse import quote_plus

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

logger = logging.getLogger("contactsync.engine.http")

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# Safe to repeat whatever happened on the server the first time.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Statuses that say the server did not act on the request, so even a
# non-idempotent request may be sent again.
_NOT_PROCESSED = frozenset({408, 429})
# An access token, an API key or an idempotency key: visible ASCII only, so it
# can never break a header (and h11 never echoes it in an error).
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A short machine-readable error code from a response body, safe to show.
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_system_random = secrets.SystemRandom()

Positive = Annotated[float, Field(gt=0)]


class HttpError(Exception):
    """A request the engine could not complete."""


class InsecureUrlError(HttpError, ValueError):
    """A URL that is not https:// (there is no switch to allow one)."""


class TlsError(HttpError):
    """The TLS handshake failed: untrusted certificate, wrong host, protocol version, mTLS."""


class AuthError(HttpError):
    """Credentials were rejected, or no usable token could be obtained."""


class HttpStatusError(HttpError):
    """The server answered with a status that is not success."""

    def __init__(self, message: str, *, status: int, attempts: int, error_code: str | None):
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.error_code = error_code  # a short code from the error body, e.g. "invalid_scope"


class TransportError(HttpError):
    """The connection failed: refused, timed out, or dropped before the response was complete."""

    def __init__(self, message: str, *, attempts: int):
        super().__init__(message)
        self.attempts = attempts


class ResponseError(HttpError):
    """A successful response whose body is not what was asked for."""


class Timeouts(BaseModel):
    """Seconds allowed for each phase of every request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect: Positive = 10.0
    read: Positive = 30.0
    write: Positive = 30.0
    pool: Positive = 10.0


class HttpSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path | None = None  # None: the system's CAs
    min_tls: Literal["1.2", "1.3"] = "1.2"
    client_cert: Path | None = None  # mTLS, with client_key
    client_key: Path | None = None
    timeout: Timeouts = Timeouts()
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    max_retry_time: Positive = 60.0  # seconds from the first attempt to giving up
    backoff_base: Positive = 0.5
    backoff_max: Positive = 30.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key must be given together")
        if self.backoff_base > self.backoff_max:
            raise ValueError("backoff_base must not exceed backoff_max")
        return self


class OAuth2ClientCredentials(BaseModel):
    """The OAuth 2.0 client-credentials grant (RFC 6749 section 4.4)."""

    # Validation errors must not echo a secret back.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    token_url: str
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: SecretStr
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    # A token is renewed this long before it expires (at most 10% of its lifetime),
    # so clock skew and request latency never present an expired token.
    refresh_margin: Annotated[float, Field(ge=0)] = 30.0


class ApiKey(BaseModel):
    """A static key sent in a header, e.g. `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    header: str = "Authorization"
    value: SecretStr
    prefix: str | None = None  # e.g. "Bearer"; joined to the value with one space

    @field_validator("header")
    @classmethod
    def _header_name(cls, header: str) -> str:
        if not _HEADER_NAME.fullmatch(header):
            raise ValueError("header must be a valid HTTP header name")
        return header

    @field_validator("value")
    @classmethod
    def _header_value(cls, value: SecretStr) -> SecretStr:
        if not _HEADER_SAFE.fullmatch(value.get_secret_value()):
            raise ValueError("the API key must be visible ASCII characters without spaces")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and not _HEADER_SAFE.fullmatch(prefix):
            raise ValueError("prefix must be visible ASCII characters without spaces")
        return prefix

    def header_value(self) -> str:
        key = self.value.get_secret_value()
        return key if self.prefix is None else f"{self.prefix} {key}"


AuthConfig = OAuth2ClientCredentials | ApiKey


def require_https(url: str | httpx.URL, what: str) -> httpx.URL:
    """Parse `url`, refusing anything but an https:// URL without embedded credentials.

    `what` names the URL in the error ("the API URL"); the URL itself is left out
    of messages because its query may carry something sensitive.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise InsecureUrlError(f"{what} is not a valid URL; it must use https://") from None
    if parsed.scheme != "https":
        scheme = f"{parsed.scheme}://" if parsed.scheme else "no scheme"
        raise InsecureUrlError(f"{what} must use https:// (got {scheme})")
    if not parsed.host:
        raise InsecureUrlError(f"{what} has no host")
    if parsed.userinfo:
        raise InsecureUrlError(f"{what} must not embed credentials; configure auth instead")
    return parsed


def build_ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    """A client context that always verifies the server's certificate and name."""
    try:
        if settings.ca_file is None:
            context = ssl.create_default_context()
        else:
            # Only this CA is trusted, not the system's as well.
            context = ssl.create_default_context(cafile=str(settings.ca_file))
        if settings.client_cert is not None and settings.client_key is not None:
            context.load_cert_chain(settings.client_cert, settings.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load TLS files: {exc}") from exc
    # The defaults already say so; stated here so that no change of defaults
    # can ever weaken verification.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.minimum_version = _TLS_VERSIONS[settings.min_tls]
    return context


def read_json(response: httpx.Response) -> object:
    """The JSON body of a response, or ResponseError (which never quotes the body)."""
    try:
        body: object = response.json()
    except ValueError:
        raise ResponseError(
            f"the response from {_where(response.request.method, response.request.url)} "
            "is not valid JSON"
        ) from None
    return body


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float | None  # on the client's clock; None: no known expiry


class SecureClient:
    """An `httpx.Client` with verified TLS, authentication and a retry policy.

    `sleep`, `clock` (monotonic seconds) and `jitter` (uniform in [0, 1)) are
    injectable so tests run without real waiting. Safe to share between threads.
    """

    def __init__(
        self,
        settings: HttpSettings,
        auth: AuthConfig | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = _system_random.random,
    ) -> None:
        self._settings = settings
        self._auth = auth
        self._token_url = (
            require_https(auth.token_url, "the OAuth token URL")
            if isinstance(auth, OAuth2ClientCredentials)
            else None
        )
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        timeout = settings.timeout
        self._client = httpx.Client(
            verify=build_ssl_context(settings),
            timeout=httpx.Timeout(
                connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool
            ),
            # A redirect could carry credentials to another origin; callers see the 3xx.
            follow_redirects=False,
            # No proxy, CA or .netrc credentials picked up from the environment.
            trust_env=False,
            headers={"User-Agent": "contactsync", "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"SecureClient(auth={type(self._auth).__name__}, min_tls={self._settings.min_tls})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get_json(self, url: str | httpx.URL, params: Mapping[str, str] | None = None) -> object:
        return read_json(self.request("GET", url, params=params))

    def post_json(
        self, url: str | httpx.URL, body: object, headers: Mapping[str, str] | None = None
    ) -> object:
        """POST `body` as JSON; the parsed response, or None for an empty one.

        Retried on 5xx and dropped connections only when `headers` carry an
        Idempotency-Key, because only then can a repeat not apply twice.
        """
        response = self.request("POST", url, json=body, headers=headers)
        return read_json(response) if response.content else None

    def open_stream(self, url: str | httpx.URL) -> BinaryIO:
        """GET `url` and return its body as a buffered binary stream (close it when done).

        Not retried: a body is consumed as it arrives, so a failure mid-stream
        surfaces as a TransportError and the caller's run fails whole.
        """
        target = require_https(url, "the source URL")
        headers: dict[str, str] = {}
        self._authorize(headers)
        request = self._client.build_request("GET", target, headers=headers)
        try:
            response = self._client.send(request, stream=True)
        except httpx.RequestError as exc:
            raise TransportError(
                f"GET {location(target)} failed: {type(exc).__name__}", attempts=1
            ) from exc
        if not response.is_success:
            response.close()
            raise HttpStatusError(
                f"GET {location(target)} failed: {response.status_code}",
                status=response.status_code,
                attempts=1,
                error_code=None,
            )
        return io.BufferedReader(_ResponseStream(response), buffer_size=1 << 16)

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, str] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send an authenticated request; a 2xx response, or an HttpError.

        GET, HEAD, OPTIONS, PUT and DELETE, and any request with an
        Idempotency-Key header, are retried on 5xx and dropped connections;
        other requests only where the server cannot have acted (429, 408,
        connection not established).
        """
        method = method.upper()
        target = require_https(url, "the request URL")
        extra = dict(headers or {})
        idempotent = method in _IDEMPOTENT_METHODS or any(
            name.lower() == "idempotency-key" for name in extra
        )
        return self._send(
            method,
            target,
            params=params,
            json=json,
            data=None,
            headers=extra,
            idempotent=idempotent,
            authenticate=True,
        )

    def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        params: Mapping[str, str] | None,
        json: object,
        data: Mapping[str, str] | None,
        headers: dict[str, str],
        idempotent: bool,
        authenticate: bool,
    ) -> httpx.Response:
        where = _where(method, url)
        deadline = self._clock() + self._settings.max_retry_time
        reauthenticated = False
        attempt = 1
        while True:
            sent_headers = dict(headers)
            token = self._authorize(sent_headers) if authenticate else None
            started = time.perf_counter()
            try:
                response = self._client.request(
                    method, url, params=params, json=json, data=data, headers=sent_headers
                )
            except httpx.RequestError as exc:
                self._log(method, url, type(exc).__name__, attempt, started)
                failure = _transport_failure(exc, where, idempotent)
                delay = self._backoff(attempt)
            else:
                self._log(method, url, response.status_code, attempt, started)
                if response.is_success:
                    return response
                if response.status_code == 401 and authenticate:
                    if token is None:  # an API key or no credentials: nothing to renew
                        raise AuthError(
                            f"{where} failed: 401 Unauthorized; the credentials were rejected"
                        )
                    if reauthenticated:
                        raise AuthError(
                            f"{where} failed: 401 Unauthorized even with a freshly issued token"
                        )
                    # The token may have been revoked or expired early: one new
                    # token, one more try, not counted as a retry.
                    reauthenticated = True
                    self._discard(token)
                    continue
                failure = _status_failure(response, idempotent)
                retry_after = _retry_after(response.headers.get("Retry-After"))
                delay = self._backoff(attempt) if retry_after is None else retry_after
            if not failure.retryable or attempt >= self._settings.max_attempts:
                raise failure.error(where, attempt)
            if self._clock() + delay > deadline:
                limit = self._settings.max_retry_time
                raise failure.error(
                    where, attempt, f"giving up: a retry in {delay:.1f}s would exceed {limit:g}s"
                )
            logger.info(
                "%s %s %s retrying attempt=%d in %.2fs",
                method,
                _host(url),
                url.path,
                attempt + 1,
                delay,
            )
            self._sleep(delay)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(n-1)))."""
        settings = self._settings
        ceiling = min(settings.backoff_max, settings.backoff_base * 2.0 ** (attempt - 1))
        return self._jitter() * ceiling

    def _authorize(self, headers: dict[str, str]) -> _Token | None:
        if self._auth is None:  # a public resource: TLS still verified
            return None
        if isinstance(self._auth, ApiKey):
            headers[self._auth.header] = self._auth.header_value()
            return None
        token = self._current_token(self._auth)
        headers["Authorization"] = f"Bearer {token.value}"
        return token

    def _current_token(self, auth: OAuth2ClientCredentials) -> _Token:
        # One fetch at a time: threads arriving meanwhile reuse its token.
        with self._token_lock:
            token = self._token
            if token is None or (
                token.refresh_at is not None and self._clock() >= token.refresh_at
            ):
                token = self._fetch_token(auth)
                self._token = token
            return token

    def _discard(self, token: _Token) -> None:
        with self._token_lock:
            # Another thread may already have replaced it.
            if self._token is token:
                self._token = None

    def _fetch_token(self, auth: OAuth2ClientCredentials) -> _Token:
        assert self._token_url is not None
        form = {"grant_type": "client_credentials"}
        if auth.scopes:
            form["scope"] = " ".join(auth.scopes)
        if auth.audience is not None:
            form["audience"] = auth.audience
        headers: dict[str, str] = {}
        secret = auth.client_secret.get_secret_value()
        if auth.client_auth == "client_secret_basic":
            # RFC 6749 section 2.3.1: both parts form-encoded before Base64.
            pair = f"{quote_plus(auth.client_id)}:{quote_plus(secret)}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        else:
            form["client_id"] = auth.client_id
            form["client_secret"] = secret
        requested_at = self._clock()
        try:
            # Asking for another token is harmless, so it is retried like a GET.
            response = self._send(
                "POST",
                self._token_url,
                params=None,
                json=None,
                data=form,
                headers=headers,
                idempotent=True,
                authenticate=False,
            )
        except HttpStatusError as exc:
            if 400 <= exc.status < 500:
                raise AuthError(
                    f"the token endpoint at {_where('POST', self._token_url)} refused the "
                    f"client credentials: {exc.status}"
                    + (f" ({exc.error_code})" if exc.error_code else "")
                ) from exc
            raise
        return _parse_token(response, requested_at, auth.refresh_margin)

    def _log(
        self, method: str, url: httpx.URL, outcome: int | str, attempt: int, started: float
    ) -> None:
        logger.debug(
            "%s %s %s status=%s attempt=%d duration=%.3fs",
            method,
            _host(url),
            url.path,
            outcome,
            attempt,
            time.perf_counter() - started,
        )


def _host(url: httpx.URL) -> str:
    return url.host if url.port is None else f"{url.host}:{url.port}"


def location(url: httpx.URL) -> str:
    """Host, port and path of `url`: what may be shown of it (a query may hold secrets)."""
    return f"{_host(url)}{url.path}"


def _where(method: str, url: httpx.URL) -> str:
    return f"{method} {location(url)}"


def _parse_token(response: httpx.Response, requested_at: float, margin: float) -> _Token:
    # No chained exceptions below: the decoder's exception would hold the body,
    # and the body holds the token.
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AuthError("the token endpoint's response is not a JSON object")
    value = body.get("access_token")
    if not isinstance(value, str) or not _HEADER_SAFE.fullmatch(value):
        raise AuthError("the token endpoint's response has no usable access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise AuthError("the token endpoint issued a token that is not a Bearer token")
    lifetime = body.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isascii() and lifetime.isdigit():
        lifetime = int(lifetime)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        return _Token(value, refresh_at=None)
    return _Token(value, refresh_at=requested_at + lifetime - min(margin, 0.1 * lifetime))


def _retry_after(header: str | None) -> float | None:
    """Seconds to wait per a Retry-After header (delay-seconds or HTTP-date), if valid."""
    if header is None:
        return None
    header = header.strip()
    if header.isascii() and header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failed attempt: why, whether another may follow, and the status if there was one."""

    reason: str
    retryable: bool
    status: int | None = None
    error_code: str | None = None

    def error(self, where: str, attempts: int, note: str | None = None) -> HttpError:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"{where} failed{tries}: {self.reason}" + (f"; {note}" if note else "")
        if self.status is None:
            return TransportError(message, attempts=attempts)
        return HttpStatusError(
            message, status=self.status, attempts=attempts, error_code=self.error_code
        )


def _status_failure(response: httpx.Response, idempotent: bool) -> _Failure:
    status = response.status_code
    code = _error_code(response)
    reason = f"{status} {response.reason_phrase or 'error'}" + (f" ({code})" if code else "")
    # 501 (and 505) say the server will never do it; other 5xx may pass.
    transient = status >= 500 and status not in (501, 505)
    retryable = status in _NOT_PROCESSED or (idempotent and transient)
    return _Failure(reason, retryable, status, code)


def _error_code(response: httpx.Response) -> str | None:
    """A short error code from a JSON error body (`{"error": "invalid_scope"}`), if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


def _transport_failure(exc: httpx.RequestError, where: str, idempotent: bool) -> _Failure:
    """What `exc` means for the request; raises at once when retrying cannot help."""
    tls = _tls_cause(exc)
    if tls is not None:
        # Trust and protocol failures are configuration, not bad luck.
        raise TlsError(f"TLS with {where} failed: {_ssl_reason(tls)}") from exc
    if isinstance(exc, httpx.LocalProtocolError):
        # Its message may quote a header value, so it is neither shown nor chained.
        raise HttpError(f"{where}: the request was malformed and was not sent") from None
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.DecodingError):
        raise HttpError(f"{where} failed: {exc}") from exc
    # Nothing reached the server when connecting failed; after that only an
    # idempotent request may be sent again.
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return _Failure(str(exc) or type(exc).__name__, not_sent or idempotent)


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind an httpx exception, unless it is just an unclean close."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# What OpenSSL's terse reason codes mean for whoever has to fix the configuration.
_SSL_HINTS = {
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version that both sides allow (see min_tls)",
    "UNSUPPORTED_PROTOCOL": "no TLS version that both sides allow (see min_tls)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version that both sides allow (see min_tls)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate (mTLS)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server did not accept the client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate's CA",
}


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    reason = exc.reason or str(exc)
    hint = _SSL_HINTS.get(reason)
    return f"{hint} ({reason})" if hint else reason


class _ResponseStream(io.RawIOBase):
    """A streamed response body as a binary file, so a reader never holds it whole."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.iter_bytes()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except httpx.HTTPError as exc:
                raise TransportError(
                    f"GET {location(self._response.url)} failed mid-stream: {type(exc).__name__}",
                    attempts=1,
                ) from exc
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._response.close()
        super().close()
