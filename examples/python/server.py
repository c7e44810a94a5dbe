#!/usr/bin/python3
"""A tiny API protected by apikey, with only the standard library's http.server.

    GET  /health     no key needed
    GET  /documents  needs documents:read
    POST /documents  needs documents:create   body: {"title": "..."}

Run with Debian's Python (python3-psycopg and python3-psycopg-pool):

    PGHOST=... PGDATABASE=... PGUSER=... PORT=8000 /usr/bin/python3 server.py

Environment: PORT (default 8000), HOST (default 127.0.0.1; an IPv6 address
such as :: or ::ffff:127.0.0.1 makes an IPv6 socket, on which IPv4 clients
appear as ::ffff:a.b.c.d), TRUST_PROXY=loopback (take the client address
from X-Forwarded-For when the peer is a local reverse proxy), and PG*.
"""

import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from apikey_auth import ApiKeyError, authenticate, get_pool

log = logging.getLogger("server")
TRUST_PROXY = os.environ.get("TRUST_PROXY", "")
MAX_BODY = 64 * 1024

# Demo storage: in memory, per organization.
DOCUMENTS = []
DOCUMENTS_LOCK = threading.Lock()


class HTTPError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def is_loopback(addr):
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: requires Content-Length on every response
    server_version = "apikey-example"
    sys_version = ""

    def version_string(self):
        return self.server_version

    # ------------------------------------------------------------ plumbing

    def client_ip(self):
        peer = self.client_address[0]
        # Behind a reverse proxy every client has the proxy's address and IP
        # allowlists mean nothing; trust X-Forwarded-For only from our own
        # proxy (here: one on this machine), as its last entry is the one the
        # proxy wrote. Whatever it holds, apikey_auth validates it.
        if TRUST_PROXY == "loopback" and is_loopback(peer):
            xff = self.headers.get("X-Forwarded-For")
            if xff:
                return xff.split(",")[-1].strip()
        return peer

    def send_json(self, status, body, headers=None):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # http.server's own errors (bad request line, oversized headers) as JSON too.
    def send_error(self, code, message=None, explain=None):
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self.close_connection = True
        self.send_json(code, {"error": phrase, "code": phrase.upper().replace(" ", "_").replace("-", "_")},
                       {"Connection": "close"})

    # One line per request. No headers and no query string: either may carry
    # an API key (clients do put keys in ?api_key=), and logs outlive keys.
    def log_request(self, code="-", size="-"):
        key = getattr(self, "api_key", None)
        path = urlsplit(self.path).path if hasattr(self, "path") else "-"
        ms = (time.monotonic() - getattr(self, "started", time.monotonic())) * 1000
        log.info("%s %s %s key=%s %.1fms", getattr(self, "command", None) or "-", path, int(code),
                 key.key_id if key else "-", ms)

    def log_error(self, format, *args):
        # http.server quotes the raw request line here; log only the status.
        log.warning("protocol error %s from %s", args[0] if args else "?", self.client_address[0])

    def log_message(self, format, *args):
        log.info(format, *args)

    def close_if_body_unread(self):
        # A request body left unread would be taken for the next request on
        # this keep-alive connection: close it instead.
        if not self.body_read and (self.headers.get("Content-Length", "0") != "0"
                                   or "Transfer-Encoding" in self.headers):
            self.close_connection = True

    def authenticate(self, scopes):
        self.api_key = authenticate(self.headers.get("Authorization"), self.client_ip(), scopes)
        return self.api_key

    def read_json(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HTTPError(411, "LENGTH_REQUIRED", "Content-Length is required")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise HTTPError(400, "BAD_REQUEST", "Invalid Content-Length") from None
        if length < 0 or length > MAX_BODY:
            raise HTTPError(413, "PAYLOAD_TOO_LARGE", "The body is too large")
        raw = self.rfile.read(length)
        self.body_read = True
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise HTTPError(400, "BAD_REQUEST", "The body is not valid JSON") from None

    # ------------------------------------------------------------ routing

    def handle_one_request(self):
        self.started = time.monotonic()
        self.api_key = None
        self.body_read = False
        super().handle_one_request()

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        path = urlsplit(self.path).path
        routes = ROUTES.get(path)
        try:
            if routes is None:
                raise HTTPError(404, "ROUTE_NOT_FOUND", "No such route")
            handler = routes.get(method)
            if handler is None:
                raise HTTPError(405, "METHOD_NOT_ALLOWED", "Method not allowed",
                                {"Allow": ", ".join(sorted(routes))})
            status, body, headers = handler(self)
            self.send_json(status, body, headers)
        except ApiKeyError as e:
            # Every refusal: status, WWW-Authenticate / Retry-After /
            # X-RateLimit-* headers and the JSON body come with the exception.
            self.close_if_body_unread()
            self.send_json(e.status, e.body(), e.headers)
        except HTTPError as e:
            self.close_if_body_unread()
            self.send_json(e.status, {"error": e.message, "code": e.code}, e.headers)
        except Exception:
            log.exception("error in %s %s", method, path)
            self.close_connection = True
            self.send_json(500, {"error": "Internal server error", "code": "INTERNAL_ERROR"})


def health(req):
    return 200, {"status": "ok"}, {}


def list_documents(req):
    key = req.authenticate("documents:read")
    with DOCUMENTS_LOCK:
        docs = [d for d in DOCUMENTS if d["org_id"] == key.org_id]
    return 200, {"org_id": key.org_id, "key_id": key.key_id, "documents": docs}, key.headers


def create_document(req):
    # The body is read only after the key is accepted.
    key = req.authenticate(["documents:create"])
    body = req.read_json()
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, str) or title == "":
        raise HTTPError(400, "BAD_REQUEST", "title (a non-empty string) is required", key.headers)
    with DOCUMENTS_LOCK:
        doc = {"id": len(DOCUMENTS) + 1, "org_id": key.org_id, "title": title, "created_by": key.key_id}
        DOCUMENTS.append(doc)
    return 201, doc, key.headers


ROUTES = {
    "/health": {"GET": health},
    "/documents": {"GET": list_documents, "POST": create_document},
}


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    get_pool()  # open the pool now: connections are made in the background
    try:
        httpd = Server((host, port), Handler)
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", host, port, e)
        return 1

    def stop(signum, frame):
        log.info("%s: shutting down", signal.Signals(signum).name)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        get_pool().close(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
