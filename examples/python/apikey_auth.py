"""apikey_auth: authenticate HTTP requests with the apikey PostgreSQL extension.

Framework-free: call authenticate() with the request's Authorization header,
the client address and the scopes the endpoint needs. It returns an ApiKey on
success and raises an ApiKeyError subclass otherwise; every ApiKeyError
carries the HTTP status, the response headers and a JSON-ready body, so a
handler answers all refusals the same way:

    try:
        key = authenticate(headers.get("Authorization"), client_ip, "documents:read")
    except ApiKeyError as e:
        return respond(e.status, e.body(), e.headers)
    return respond(200, {...}, key.headers)      # key.headers: X-RateLimit-*

Requires psycopg 3 and psycopg_pool (Debian 12: python3-psycopg and
python3-psycopg-pool). Connection settings come from the standard PG*
environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import math
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

__all__ = [
    "ApiKey", "ApiKeyError", "Unauthorized", "Forbidden", "TooManyRequests",
    "ServiceUnavailable", "InternalError", "authenticate", "client_address",
    "get_pool",
]

log = logging.getLogger("apikey")

# Named columns instead of SELECT *: the statement is prepared once per
# connection, and PostgreSQL refuses to run a prepared statement whose result
# columns have changed ("cached plan must not change result type"). A later
# version of the extension adds columns to the result; named columns keep the
# prepared statement valid across ALTER EXTENSION UPDATE.
VERIFY_SQL = (
    "SELECT valid, code, key_id, org_id, name, scopes, environment, expires_at,"
    " rate_limit, rate_remaining, rate_reset, metadata"
    " FROM apikey_verify(%s::text, %s::text[], %s::inet)"
)

# The syntax the extension accepts (resource:action, either side may be *).
_SCOPE_RE = re.compile(r"(\*|[a-z0-9_.-]+)(:(\*|[a-z0-9_.-]+))?\Z")

_INVALID_TOKEN = {
    "MALFORMED": "The API key is malformed",
    "NOT_FOUND": "The API key is unknown",
    "REVOKED": "The API key has been revoked",
    "EXPIRED": "The API key has expired",
}


class ApiKeyError(Exception):
    """A refused or failed authentication: HTTP status, headers and body."""

    status = 500

    def __init__(self, code: str, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": self.message, "code": self.code}


class Unauthorized(ApiKeyError):
    """401: no key, or the key is malformed, unknown, revoked or expired."""
    status = 401


class Forbidden(ApiKeyError):
    """403: a good key that may not do this (scope) or not from here (IP)."""
    status = 403


class TooManyRequests(ApiKeyError):
    """429: the key's rate-limit window is used up (see Retry-After)."""
    status = 429


class ServiceUnavailable(ApiKeyError):
    """503: the database could not answer (down, overloaded, timed out)."""
    status = 503


class InternalError(ApiKeyError):
    """500: any other database error: a bug, not a bad key."""
    status = 500


@dataclass(frozen=True)
class ApiKey:
    """The verified key. headers: the X-RateLimit-* headers for the response."""

    key_id: str
    org_id: str
    name: str
    scopes: list
    environment: str
    expires_at: Optional[_dt.datetime]
    metadata: dict
    rate_limit: Optional[int]
    rate_remaining: Optional[int]
    rate_reset: Optional[_dt.datetime]
    headers: dict = field(default_factory=dict)


_pool: Optional[ConnectionPool] = None
_pool_lock = threading.Lock()


def get_pool() -> ConnectionPool:
    """The module's connection pool, opened on first use.

    A pool rather than a connection per thread: ThreadingHTTPServer (like many
    servers) starts a new thread for every client connection, so per-thread
    connections would mean a new database connection per HTTP connection.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ConnectionPool(
                "",  # empty conninfo: libpq reads the PG* environment variables
                open=True,  # connect now, in the background (explicit: psycopg_pool 3.2 warns otherwise)
                min_size=1,
                max_size=10,
                timeout=5,  # wait at most 5 s for a free connection, then 503
                name="apikey",
                kwargs={
                    "autocommit": True,  # one statement, no transaction to keep open
                    "row_factory": dict_row,
                    "connect_timeout": 5,
                    # PGAPPNAME, when set, wins (pg_stat_activity, server logs)
                    "fallback_application_name": "apikey-example",
                    # verify is an index lookup; anything slower means trouble
                    "options": "-c statement_timeout=5000",
                },
            )
        return _pool


def _normalize_scopes(required: Union[str, Iterable[str], None]) -> list:
    # A single string is one scope, not a sequence of one-letter scopes.
    if required is None:
        scopes: list = []
    elif isinstance(required, str):
        scopes = [required]
    elif isinstance(required, (bytes, bytearray)):
        raise TypeError("required scopes must be str, not bytes")
    else:
        scopes = list(required)
    for s in scopes:
        if not isinstance(s, str) or not _SCOPE_RE.match(s):
            raise ValueError(f"invalid required scope {s!r} (expected resource:action)")
    return scopes


def client_address(raw: Any) -> Optional[str]:
    """The client address as PostgreSQL's inet accepts it, or None.

    Garbage (a forged or broken X-Forwarded-For) becomes None instead of an
    `invalid input syntax for type inet` error: keys without an allowlist still
    work, keys with one are refused (FORBIDDEN), the safe outcome.
    ::ffff:a.b.c.d is passed as it is: the extension treats it as a.b.c.d.
    """
    if raw is None:
        return None
    if isinstance(raw, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        raw = str(raw)
    if not isinstance(raw, str):
        return None
    text = raw.strip().split("%", 1)[0]  # fe80::1%eth0: inet has no zone index
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _epoch_ceil(ts: _dt.datetime) -> int:
    return math.ceil(ts.timestamp())


def _rate_limit_headers(v: dict) -> dict:
    # Only when verify reported a window: VALID and RATE_LIMITED of a key that
    # has a limit (unlimited keys have rate_limit 0 and no window). Reset in
    # epoch seconds, rounded up so a client never retries before the turn.
    if not v["rate_limit"] or v["rate_remaining"] is None or v["rate_reset"] is None:
        return {}
    return {
        "X-RateLimit-Limit": str(v["rate_limit"]),
        "X-RateLimit-Remaining": str(v["rate_remaining"]),
        "X-RateLimit-Reset": str(_epoch_ceil(v["rate_reset"])),
    }


def authenticate(
    authorization_header: Optional[str],
    client_ip: Any,
    required_scopes: Union[str, Iterable[str], None] = (),
    *,
    pool: Optional[ConnectionPool] = None,
    realm: str = "api",
) -> ApiKey:
    """Verify the request's key; return an ApiKey or raise an ApiKeyError.

    authorization_header: the Authorization header as received ("Bearer <key>"
    or a bare key); None if absent. client_ip: str or ipaddress object, or None.
    required_scopes: one scope as a str, or a sequence of scopes (all needed).
    """
    scopes = _normalize_scopes(required_scopes)
    challenge = f'Bearer realm="{realm}"'

    # RFC 6750 3.1: a request without credentials gets the challenge but no
    # error code. Answered without asking the database.
    if authorization_header is None or authorization_header.strip() == "":
        raise Unauthorized(
            "MISSING_TOKEN", "An API key is required (Authorization: Bearer <key>)",
            {"WWW-Authenticate": challenge})
    if "\x00" in authorization_header:
        # PostgreSQL text cannot hold NUL, so psycopg would raise; no key has one.
        raise Unauthorized("MALFORMED", _INVALID_TOKEN["MALFORMED"], {
            "WWW-Authenticate": f'{challenge}, error="invalid_token", '
                                f'error_description="{_INVALID_TOKEN["MALFORMED"]}"'})

    ip = client_address(client_ip)
    try:
        with (pool or get_pool()).connection() as conn:
            # prepare=True: prepared on this connection's first call, then
            # only executed (psycopg would otherwise wait for 5 executions).
            v = conn.execute(VERIFY_SQL, (authorization_header, scopes, ip), prepare=True).fetchone()
        if v is None:
            raise psycopg.InternalError("apikey_verify returned no row")
    except (PoolTimeout, psycopg.OperationalError) as e:
        # Logged without the header; the message names no token.
        log.error("verification failed (database unavailable): %s: %s",
                  type(e).__name__, _redact(str(e), authorization_header))
        raise ServiceUnavailable("SERVICE_UNAVAILABLE", "Authentication is temporarily unavailable") from None
    except psycopg.Error as e:
        log.error("verification failed: %s %s: %s", type(e).__name__, getattr(e, "sqlstate", None) or "-",
                  _redact(str(e), authorization_header))
        raise InternalError("INTERNAL_ERROR", "Internal server error") from None

    headers = _rate_limit_headers(v)
    code = v["code"]

    if v["valid"] is True and code == "VALID":
        return ApiKey(
            key_id=v["key_id"], org_id=v["org_id"], name=v["name"], scopes=v["scopes"],
            environment=v["environment"], expires_at=v["expires_at"], metadata=v["metadata"],
            rate_limit=v["rate_limit"], rate_remaining=v["rate_remaining"],
            rate_reset=v["rate_reset"], headers=headers)

    if code in _INVALID_TOKEN:
        headers["WWW-Authenticate"] = (
            f'{challenge}, error="invalid_token", error_description="{_INVALID_TOKEN[code]}"')
        raise Unauthorized(code, _INVALID_TOKEN[code], headers)
    if code == "INSUFFICIENT_SCOPE":
        headers["WWW-Authenticate"] = f'{challenge}, error="insufficient_scope"' + (
            f', scope="{" ".join(scopes)}"' if scopes else "")
        raise Forbidden(code, "The API key lacks a required scope: " + ", ".join(scopes), headers)
    if code == "FORBIDDEN":
        raise Forbidden(code, "The API key may not be used from this address", headers)
    if code == "RATE_LIMITED":
        # Retry-After in whole seconds, at least 1, until the window turns.
        wait = 1
        if v["rate_reset"] is not None:
            now = _dt.datetime.now(_dt.timezone.utc)
            wait = max(1, math.ceil((v["rate_reset"] - now).total_seconds()))
        headers["Retry-After"] = str(wait)
        raise TooManyRequests(code, "Rate limit exceeded for this API key", headers)
    # A code this module does not know (a newer extension): refuse.
    log.error("unexpected verification code %r for key %s", code, v["key_id"] or "-")
    raise Forbidden(str(code), "The request was refused", headers)


def _redact(text: str, header: Optional[str]) -> str:
    # Never let a token reach a log line, even if an error message quoted it.
    if header:
        bare = re.sub(r"(?i)^\s*bearer\s+", "", header).strip()
        for secret in (header, bare):
            if len(secret) >= 8:
                text = text.replace(secret, "[REDACTED]")
    return text
