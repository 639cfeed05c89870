"""Helpers for tests and the offline demo: stand-ins for the services the app talks to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


@contextmanager
def serve_in_thread(
    app: Flask, host: str = "127.0.0.1", name: str = "stand-in", port: int = 0
) -> Iterator[str]:
    """Serve a WSGI app on `port` (0: a free one) from a daemon thread; yields its base URL
    and stops the server on exit."""
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_until_interrupted(server: BaseWSGIServer) -> None:
    """Serve in the foreground until Ctrl-C, then close the server's socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
