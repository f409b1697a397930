"""An HTTPS server on a loopback port serving MTA-STS policies (RFC 8461 section 3.3,
`/.well-known/mta-sts.txt`), one per policy host, each with the certificate the test gives
it (chosen by SNI), so a test can serve a policy behind a good or a bad certificate."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

POLICY_PATH = "/.well-known/mta-sts.txt"


@dataclass
class Served:
    body: bytes
    content_type: str = "text/plain"
    status: int = 200
    location: str | None = None  # a redirect target (RFC 8461 says not to follow it)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client refusing our certificate is what some tests want: no traceback."""


class PolicyServer:
    def __init__(self) -> None:
        self.served: dict[str, Served] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.requests: list[tuple[str, str]] = []  # (host, path), to count fetches
        self._fallback = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._fallback.sni_callback = self._choose_certificate
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def serve(
        self,
        host: str,
        certificate: tuple[Path, Path],
        policy: str | bytes | Served,
    ) -> None:
        """Serve `policy` for `https://host/.well-known/mta-sts.txt` behind `certificate`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        self.contexts[host.lower()] = context
        if isinstance(policy, str):
            policy = policy.encode()
        self.served[host.lower()] = policy if isinstance(policy, Served) else Served(policy)
        if len(self.contexts) == 1:
            self._fallback.load_cert_chain(*certificate)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)

    def _choose_certificate(
        self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        chosen = self.contexts.get((server_name or "").lower())
        if chosen is not None:
            connection.context = chosen

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                self.request = server._fallback.wrap_socket(self.request, server_side=True)
                super().setup()

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                server.requests.append((host, self.path))
                served = server.served.get(host)
                if served is None or self.path != POLICY_PATH:
                    self.send_error(404)
                    return
                self.send_response(served.status)
                self.send_header("Content-Type", served.content_type)
                self.send_header("Content-Length", str(len(served.body)))
                if served.location:
                    self.send_header("Location", served.location)
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test reads `requests` instead."""

        return Handler
