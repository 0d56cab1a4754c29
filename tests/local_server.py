"""The lifecycle every fake service on 127.0.0.1 shares: ``with Fake() as fake: fake.url``."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class FakeHTTPServer(ThreadingHTTPServer):
    """A test server that never holds up the test: handler threads are daemons and not waited for."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: Any


class LocalServer:
    """Serves a handler on a free port of 127.0.0.1 in a daemon thread; the server's ``fake`` is ``self``."""

    path = "/"  # the base URL's path

    def __init__(self) -> None:
        self._server: Any = None

    def _parts(self) -> tuple[type[ThreadingHTTPServer], type[BaseHTTPRequestHandler]]:
        raise NotImplementedError

    def start(self) -> Self:
        server_class, handler = self._parts()
        self._server = server_class(("127.0.0.1", 0), handler)
        self._server.fake = self
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"


class _EntityHandler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        self.server.fake.hits.append(self.path)
        body = b'<!ENTITY remote "FETCHED-FROM-THE-NETWORK">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class EntityServer(LocalServer):
    """Answers every GET with an entity declaration and records the path: a DTD or entity URL pointed here
    shows whether a parser tried the network (``hits`` must stay empty)."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def _parts(self) -> tuple[type[ThreadingHTTPServer], type[BaseHTTPRequestHandler]]:
        return FakeHTTPServer, _EntityHandler
