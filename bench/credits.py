"""Benchmark of the credit path against a real gunicorn, PostgreSQL and Redis.

One run measures:

1. POST /api/user/credits/consume with 1, 50 and 200 concurrent clients, each client a
   separate user with its own API token, each request with a fresh generation_id.
2. What `@credit_required` adds to a request: the two routes of bench/probe_app.py, the
   same view with and without the decorator, each at the same client counts (1 and 50).
3. The database ceiling: the ledger statements consume_credit runs, sent directly through
   psycopg in one transaction per operation, at the same client counts as 1.
4. The HTTP ceiling: bench/lean_api.py, the same endpoint with nothing but its database and
   Redis work, on the same stack and gunicorn configuration, at the same client counts.
5. The app and the HTTP ceiling side by side: both served at once under one closed loop,
   each server's CPU per consume over the same seconds, and the ratio of the two (the box's
   speed drifts by half between runs; a ratio measured at once does not).

The HTTP clients are coroutines of one asyncio event loop on aiohttp, each with its own
session and keep-alive connection: a thread per client with httpx cost about 0.8-0.9 ms of
client CPU per request (aiohttp: 0.2-0.3 ms), which on a 2-core box is taken from the
server under test. The SQL ceiling's clients are threads, each with its psycopg connection.

It prints the tables and rewrites its own section of docs/performance.md (between the
`credits` markers; other benchmarks' sections are left alone). Run it from the project root:

    python -m bench.credits          (or: .venv/bin/python bench/credits.py)

With DATABASE_URL / REDIS_URL unset it uses the embedded servers under instance/, like the
app. Benchmark users are `bench-<n>@bench.example.com`; they are reused across runs.
gunicorn runs with gunicorn.conf.py under the environment (GUNICORN_WORKER_CLASS: gevent
unless set, WEB_CONCURRENCY, GUNICORN_THREADS, GUNICORN_CMD_ARGS); --workers and --threads
set WEB_CONCURRENCY and GUNICORN_THREADS, and the report states what gunicorn ran with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import platform
import queue
import runpy
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import aiohttp
import httpx
import psycopg
from flask import Flask

from bench.raw_consume import consume_params
from bench.report import percentile, write_section
from credit_app.services import credits as credit_service

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "performance.md"
CONSUME_PATH = "/api/user/credits/consume"
PLAIN_PATH = "/bench/probe/plain"
CREDIT_PATH = "/bench/probe/credit"
FEATURE = "interior"
TOKEN_NAME = "bench"
EMAIL_TEMPLATE = "bench-{n}@bench.example.com"
TOP_UP_BELOW = 100_000
BALANCE_TARGET = 300_000
UNLIMITED_RATE = "1000000 per minute"
CONNECTION_HEADROOM = 10
SERVER_START_TIMEOUT = 60.0
HTTP_TIMEOUT = 60.0
# How long a client keeps its unused keep-alive connection: longer than any pause in a run.
API_CLIENT_IDLE_SECONDS = 120.0
TARGETS_MS = {"credit_check": 50.0, "api": 200.0, "credit_operation": 100.0}
CPU_GROUPS = ("bench client", "gunicorn", "PostgreSQL", "Redis", "other")
SECTION_START, SECTION_END = "<!-- credits:start -->", "<!-- credits:end -->"
QUIET_BUSY = 0.15

# The ledger statements consume_credit sends for a request with a generation_id, in order:
# the service's own SQL, so the ceiling moves with it.
LOCK_USER_SQL = credit_service.LOCK_BALANCE_SQL
# A spend's statement: the ledger row (if the generation id is unused), the balance, its
# events and its draw on the lots.
POST_DRAW_SQL = credit_service.POST_FIRST_USE_DRAW_SQL


@dataclass(frozen=True)
class BenchUser:
    user_id: int
    email: str
    token: str


@dataclass
class LevelResult:
    """What one concurrency level of one measurement produced."""

    clients: int
    latencies: list[float]
    errors: Counter[str]
    elapsed: float
    machine_busy: float
    cpu: dict[str, float]
    connections: int | None = None
    loop_lag_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful operations per second."""
        return self.ok / self.elapsed if self.elapsed else 0.0

    def cpu_share(self, group: str) -> float:
        """The share of the machine's CPU time that `group` used during the level."""
        return self.cpu.get(group, 0.0) / (self.elapsed * cpu_count()) if self.elapsed else 0.0

    def cpu_ms_per_op(self, group: str) -> float:
        """CPU milliseconds `group` spent per successful operation."""
        return self.cpu.get(group, 0.0) * 1000 / self.ok if self.ok else math.nan

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the successful latencies, in milliseconds."""
        return percentile(self.latencies, p) * 1000

    def error_summary(self) -> str:
        return ", ".join(f"{label}: {n}" for label, n in self.errors.most_common()) or "0"


@dataclass(frozen=True)
class SideBySide:
    """One round of the app and the HTTP ceiling served at the same time, each half of the
    clients: their gunicorn CPU per successful consume, measured over the same seconds."""

    clients: int
    app_requests: int
    lean_requests: int
    app_cpu_ms: float
    lean_cpu_ms: float
    errors: int

    @property
    def ratio(self) -> float:
        return self.app_cpu_ms / self.lean_cpu_ms if self.lean_cpu_ms else math.nan


@dataclass
class Report:
    """Everything docs/performance.md is written from."""

    started: datetime
    machine: dict[str, str]
    settings: dict[str, str]
    duration: float
    raw: list[LevelResult] = field(default_factory=list)
    consume: list[LevelResult] = field(default_factory=list)
    plain: list[LevelResult] = field(default_factory=list)
    credit: list[LevelResult] = field(default_factory=list)
    lean: list[LevelResult] = field(default_factory=list)
    side_by_side: list[SideBySide] = field(default_factory=list)
    gunicorn: dict[str, str] = field(default_factory=dict)
    runtime: float = 0.0


# A client's single operation: returns None on success, else a short error label.
Operation = Callable[[], str | None]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def cpu_times() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(value) for value in handle.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class Attribution:
    """Which processes are ours when CPU time is split: the PostgreSQL server (postmaster)
    and database under test, the Redis server, and the gunicorn master once it runs."""

    database: str
    postgres_pid: int | None
    redis_pid: int | None
    server_pid: int | None = None


def postgres_database(pid: int) -> str | None:
    """The database a PostgreSQL client backend serves, from its process title, else None.

    A backend's title reads `postgres: <user> <database> <host> <activity>`, where the host
    is `[local]` or `address(port)`; background processes have other titles.
    """
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    words = title.split()
    if (
        len(words) >= 4
        and words[0] == "postgres:"
        and (words[3] == "[local]" or words[3].endswith(")"))
    ):
        return words[2]
    return None


def process_cpu(attribution: Attribution) -> dict[int, tuple[str, int]]:
    """Each live process's CPU group and its user + system clock ticks so far.

    Backends of other databases on the same PostgreSQL (say, a test run's) count as other.
    """
    own = os.getpid()
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        fields = text[text.rindex(")") + 2 :].split()
        ppid, ticks = int(fields[1]), int(fields[11]) + int(fields[12])
        if pid == own:
            group = "bench client"
        elif attribution.server_pid in (pid, ppid):
            group = "gunicorn"
        elif attribution.postgres_pid in (pid, ppid):
            database = postgres_database(pid)
            group = "PostgreSQL" if database in (None, attribution.database) else "other"
        elif pid == attribution.redis_pid:
            group = "Redis"
        else:
            group = "other"
        table[pid] = (group, ticks)
    return table


def cpu_by_group(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], machine_ticks: int
) -> dict[str, float]:
    """CPU seconds per group between two snapshots; "other" also takes what exited."""
    hertz = os.sysconf("SC_CLK_TCK")
    seconds = dict.fromkeys(CPU_GROUPS, 0.0)
    for pid, (group, ticks) in after.items():
        seconds[group] += (ticks - before.get(pid, (group, 0))[1]) / hertz
    known = sum(value for group, value in seconds.items() if group != "other")
    seconds["other"] = max(seconds["other"], machine_ticks / hertz - known)
    return seconds


def wait_for_quiet(max_wait: float) -> None:
    """Wait up to `max_wait` seconds for a second in which the machine is under QUIET_BUSY
    busy, so that other people's work disturbs the next level less."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        busy_before, total_before = cpu_times()
        time.sleep(1)
        busy_after, total_after = cpu_times()
        if (busy_after - busy_before) / max(1, total_after - total_before) < QUIET_BUSY:
            return


def run_level(
    operations: Sequence[Operation], duration: float, warmup: int, attribution: Attribution
) -> LevelResult:
    """Run each operation in its own thread, back to back, for `duration` seconds (the SQL
    ceiling's clients; the HTTP clients are coroutines, see http_level).

    Each thread first runs `warmup` untimed operations (opening its connection); the timed
    part starts for all threads at once. CPU time is split by process: this client, the
    gunicorn master and workers, PostgreSQL, Redis and everything else.
    """
    latencies: list[list[float]] = [[] for _ in operations]
    errors: list[Counter[str]] = [Counter() for _ in operations]
    ready = threading.Barrier(len(operations) + 1)
    go = threading.Event()
    deadline = 0.0

    def client(index: int) -> None:
        operation = operations[index]
        for _ in range(warmup):
            operation()
        ready.wait()
        go.wait()
        mine, failures = latencies[index], errors[index]
        while (started := time.perf_counter()) < deadline:
            error = operation()
            if error is None:
                mine.append(time.perf_counter() - started)
            else:
                failures[error] += 1

    threads = [
        threading.Thread(target=client, args=(index,), daemon=True)
        for index in range(len(operations))
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    processes_before = process_cpu(attribution)
    busy_before, total_before = cpu_times()
    started = time.perf_counter()
    deadline = started + duration
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    busy_after, total_after = cpu_times()
    processes_after = process_cpu(attribution)
    return LevelResult(
        clients=len(operations),
        latencies=[value for values in latencies for value in values],
        errors=sum(errors, Counter()),
        elapsed=elapsed,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
        cpu=cpu_by_group(processes_before, processes_after, busy_after - busy_before),
    )


# --- setup -----------------------------------------------------------------------------


def migrate_database() -> None:
    """`flask --app app db upgrade`, so the schema exists. Raises CalledProcessError."""
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=PROJECT_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def prepare_users(app: Flask, count: int) -> list[BenchUser]:
    """Find or register `count` bench users, top up their balances and give each a new token.

    The tokens of earlier runs are revoked; nothing is deleted.
    """
    from credit_app.platform.extensions import db
    from credit_app.services import accounts, credits

    users = []
    with app.app_context():
        for n in range(count):
            email = EMAIL_TEMPLATE.format(n=n)
            user = accounts.find_user_by_email(email)
            if user is None:
                user = accounts.register_user(email, secrets.token_urlsafe(24), verified=True)
            while user.credits_remaining < TOP_UP_BELOW:
                amount = min(credits.MAX_GRANT, BALANCE_TARGET - user.credits_remaining)
                credits.grant_credits(user.id, amount, "Benchmark balance")
            for old in accounts.list_api_tokens(user.id):
                if old.name == TOKEN_NAME and old.is_active:
                    accounts.revoke_api_token(user.id, old.id)
            _, plaintext = accounts.create_api_token(user.id, TOKEN_NAME)
            db.session.commit()
            users.append(BenchUser(user.id, email, plaintext))
        db.session.remove()
        db.engine.dispose()
    return users


def describe_code() -> str:
    """The commit under test, and whether the working tree had uncommitted changes."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}" + (" with uncommitted changes" if dirty else "")


def _git(*args: str) -> str:
    """What `git *args` prints in the project, stripped.

    Raises OSError without git, CalledProcessError when git fails (not a checkout)."""
    return subprocess.run(
        ["git", *args], cwd=PROJECT_ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def psycopg_conninfo(app: Flask) -> str:
    """The app's database URL in the form psycopg takes."""
    return app.config["SQLALCHEMY_DATABASE_URI"].replace(
        "postgresql+psycopg://", "postgresql://", 1
    )


def parent_pid(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2 :].split()[1])


def find_attribution(app: Flask, conninfo: str) -> Attribution:
    """Our PostgreSQL postmaster (the parent of a backend we open) and Redis process.

    Either is None when it does not run on this machine, or not in this PID namespace.
    """
    import redis

    with psycopg.connect(conninfo) as conn:
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        database = str(conn.info.dbname)
        postgres_pid = parent_pid(backend)
    client = redis.Redis.from_url(app.config["REDIS_URL"])
    try:
        redis_pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    return Attribution(database, postgres_pid, redis_pid if parent_pid(redis_pid) else None)


def read_meminfo_total() -> str:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def read_cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe_machine(app: Flask, conninfo: str) -> dict[str, str]:
    """Machine, PostgreSQL, Redis and Python versions for the report."""
    import redis

    with psycopg.connect(conninfo) as conn:

        def show(name: str) -> str:
            return str(conn.execute(f"SHOW {name}").fetchone()[0])

        postgres = (
            f"{show('server_version')} (fsync={show('fsync')}, "
            f"synchronous_commit={show('synchronous_commit')}, "
            f"shared_buffers={show('shared_buffers')}, "
            f"max_connections={show('max_connections')})"
        )
    client = redis.Redis.from_url(app.config["REDIS_URL"])
    try:
        redis_version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    embedded = app.config["EMBEDDED_SERVICES"]
    return {
        "CPUs (nproc)": f"{cpu_count()} x {read_cpu_model()}",
        "RAM": read_meminfo_total(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "PostgreSQL": postgres,
        "Redis": redis_version,
        "Servers": (
            "embedded (instance/, Unix sockets)"
            if embedded
            else "external (DATABASE_URL / REDIS_URL)"
        ),
        "gunicorn / gevent / Flask / SQLAlchemy / aiohttp / psycopg": " / ".join(
            version(name)
            for name in ("gunicorn", "gevent", "flask", "sqlalchemy", "aiohttp", "psycopg")
        ),
    }


# --- the raw SQL ceiling ----------------------------------------------------------------


def connection_budget(conninfo: str) -> int:
    """How many more connections the server takes, keeping some headroom for others."""
    with psycopg.connect(conninfo) as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])
        in_use = int(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchone()[0]
        )
    return max(1, limit - reserved - in_use - CONNECTION_HEADROOM)


def raw_consume(conn: psycopg.Connection, user_id: int) -> None:
    """consume_credit's statements for one use of FEATURE, in one transaction."""
    generation_id = f"bench-raw-{uuid.uuid4().hex}"
    with conn.transaction():
        remaining, _, plan = conn.execute(LOCK_USER_SQL, {"user_id": user_id}).fetchone()
        conn.execute(
            POST_DRAW_SQL, consume_params(user_id, generation_id, FEATURE, plan, remaining - 1)
        ).fetchone()


class ConnectionQueue:
    """Shared connections handed out first come, first served (psycopg_pool is not installed).

    A returned connection goes straight to the longest-waiting thread, so no thread starves.
    """

    def __init__(self, connections: Sequence[psycopg.Connection]) -> None:
        self._idle = deque(connections)
        self._waiters: deque[queue.SimpleQueue[psycopg.Connection]] = deque()
        self._lock = threading.Lock()

    def get(self) -> psycopg.Connection:
        with self._lock:
            if self._idle:
                return self._idle.popleft()
            waiter: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
            self._waiters.append(waiter)
        return waiter.get()

    def put(self, conn: psycopg.Connection) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().put(conn)
            else:
                self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            while self._idle:
                self._idle.popleft().close()


def raw_operation(pool: ConnectionQueue, user_id: int) -> Operation:
    """An operation that borrows a connection, runs raw_consume and gives it back."""

    def operation() -> str | None:
        conn = pool.get()
        try:
            raw_consume(conn, user_id)
        except psycopg.Error as exc:
            return type(exc).__name__
        finally:
            pool.put(conn)
        return None

    return operation


def measure_raw(
    conninfo: str,
    users: Sequence[BenchUser],
    clients: int,
    duration: float,
    warmup: int,
    attribution: Attribution,
) -> LevelResult:
    """The SQL ceiling at `clients` threads: one connection each, or a shared set of as many
    connections as the server allows."""
    size = min(clients, connection_budget(conninfo))
    connections: list[psycopg.Connection] = []
    try:
        for _ in range(size):
            connections.append(psycopg.connect(conninfo, autocommit=True))
        pool = ConnectionQueue(connections)
        operations = [raw_operation(pool, users[index].user_id) for index in range(clients)]
        result = run_level(operations, duration, warmup, attribution)
    finally:
        for conn in connections:
            conn.close()
    result.connections = size
    return result


# --- HTTP -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until_up(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    """Raises RuntimeError when gunicorn exits or does not answer in time."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_tail(log_path)}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(base_url + "/api/user/credits", timeout=2)
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"gunicorn did not answer within {SERVER_START_TIMEOUT:.0f} s:\n{log_tail(log_path)}"
    )


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int


APP_TARGET = "bench.probe_app:app"
LEAN_TARGET = "bench.lean_api:app"


def gunicorn_command(target: str = APP_TARGET) -> list[str]:
    return [sys.executable, "-m", "gunicorn", target, "--config", "gunicorn.conf.py"]


def server_environment(workers: int | None, threads: int | None, port: int) -> dict[str, str]:
    """gunicorn's environment: ours, with the rate limits raised and sized by `workers` /
    `threads` where given (else by WEB_CONCURRENCY / GUNICORN_THREADS as set, else by
    gunicorn.conf.py's defaults)."""
    env = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "ACCESS_LOG": "0",
        "RATELIMIT_API": UNLIMITED_RATE,
        "RATELIMIT_CONSUME": UNLIMITED_RATE,
    }
    if workers is not None:
        env["WEB_CONCURRENCY"] = str(workers)
    if threads is not None:
        env["GUNICORN_THREADS"] = str(threads)
    return env


def gunicorn_settings(env: dict[str, str], command: Sequence[str]) -> dict[str, str]:
    """What gunicorn will run with under `env`: gunicorn.conf.py's values, then
    GUNICORN_CMD_ARGS, then the command line, in gunicorn's own order of precedence."""
    from gunicorn.config import Config

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        conf = runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    names = ("workers", "worker_class", "threads", "worker_connections", "keepalive")
    settings = {name: conf.get(name, Config().settings[name].get()) for name in names}
    parser = Config().parser()
    for extra in (shlex.split(env.get("GUNICORN_CMD_ARGS", "")), list(command[6:])):
        parsed = vars(parser.parse_args(extra))
        settings.update({name: parsed[name] for name in names if parsed.get(name) is not None})
    return {name: str(value) for name, value in settings.items()}


def uses_greenlets(gunicorn: dict[str, str]) -> bool:
    """Whether the worker class serves each request in a greenlet (gevent, eventlet)."""
    return any(name in gunicorn["worker_class"] for name in ("gevent", "eventlet"))


def describe_gunicorn(gunicorn: dict[str, str]) -> str:
    """The worker model in a few words, e.g. `2 workers x 8 threads (gthread)`."""
    worker_class, threads = gunicorn["worker_class"], int(gunicorn["threads"])
    workers = int(gunicorn["workers"])
    workers_label = f"{workers} worker" if workers == 1 else f"{workers} workers"
    if uses_greenlets(gunicorn):
        return (
            f"{workers_label} ({worker_class}, up to {gunicorn['worker_connections']} "
            "connections each; threads not used)"
        )
    if worker_class == "sync" and threads > 1:
        worker_class = "gthread"
    return f"{workers_label} x {threads} threads ({worker_class})"


@contextlib.contextmanager
def gunicorn_server(
    env: dict[str, str], log_path: Path, target: str = APP_TARGET
) -> Iterator[Server]:
    """Serve `target` (default bench.probe_app: the app plus the probe routes) with the
    project's gunicorn.conf.py under `env` (its BIND is 127.0.0.1:<port>); yield its URL and
    pid.

    The server is always stopped on the way out, also on error.
    """
    base_url = f"http://{env['BIND']}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            gunicorn_command(target),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(process, base_url, log_path)
            yield Server(base_url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def new_session(
    base_url: str,
    timeout: float,
    headers: dict[str, str],
    connections: int = 1,
    idle: float = API_CLIENT_IDLE_SECONDS,
) -> aiohttp.ClientSession:
    """One user's client: `connections` keep-alive connections, each closed after `idle`
    seconds unused, no cookie handling of its own (a browser user needs two connections:
    its websocket holds one)."""
    return aiohttp.ClientSession(
        base_url=base_url,
        headers=headers,
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(
            limit=connections, keepalive_timeout=idle, enable_cleanup_closed=True
        ),
        timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10)),
    )


async def close_all(sessions: Sequence[aiohttp.ClientSession]) -> None:
    await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)


async def watch_loop_lag(out: list[float], stop: asyncio.Event, period: float = 0.1) -> None:
    """How late the event loop wakes up: a late loop would inflate every latency measured."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        planned = loop.time() + period
        await asyncio.sleep(period)
        out.append(max(0.0, loop.time() - planned) * 1000)


async def post_once(session: aiohttp.ClientSession, path: str) -> str | None:
    """POST {feature, generation_id} to `path` and read the whole answer; None when it was
    a 200, else a short error label (the status, or the exception's class)."""
    body = {"feature": FEATURE, "generation_id": f"bench-{uuid.uuid4().hex}"}
    try:
        async with session.post(path, json=body) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__
    return None if status == 200 else f"HTTP {status}"


def bearer(user: BenchUser) -> dict[str, str]:
    """An API client's headers."""
    return {"Authorization": f"Bearer {user.token}"}


def browser_session(cookie: str) -> dict[str, str]:
    """A signed-in browser's headers (bench.load.session_cookies): pages and the probe
    routes take a session, not a token."""
    from bench.load import BROWSER_AGENT

    return {"Cookie": cookie, "User-Agent": BROWSER_AGENT}


async def http_level(
    server: Server,
    path: str,
    users: Sequence[BenchUser],
    clients: int,
    duration: float,
    warmup: int,
    attribution: Attribution,
    headers: Sequence[dict[str, str]] | None = None,
) -> LevelResult:
    """`clients` coroutines, each a user with its own token (or `headers[index]`, a
    browser's session), session and keep-alive connection, POSTing to `path` back to back
    for `duration` seconds.

    Like run_level: each client first sends `warmup` untimed requests (opening its
    connection); the timed part starts for all clients at once; CPU time is split by
    process. The event loop's lag is watched during the timed part.
    """
    sessions = [
        new_session(
            server.base_url, HTTP_TIMEOUT, headers[index] if headers else bearer(users[index])
        )
        for index in range(clients)
    ]
    latencies: list[list[float]] = [[] for _ in sessions]
    errors: list[Counter[str]] = [Counter() for _ in sessions]
    attribution = replace(attribution, server_pid=server.pid)
    lag_ms: list[float] = []
    stop_lag = asyncio.Event()
    snapshots: list = []

    def record(index: int, error: str | None, seconds: float) -> None:
        if error is None:
            latencies[index].append(seconds)
        else:
            errors[index][error] += 1

    def start() -> None:
        snapshots.append((process_cpu(attribution), cpu_times()))
        snapshots.append(asyncio.ensure_future(watch_loop_lag(lag_ms, stop_lag)))

    try:
        elapsed = await closed_loop(sessions, path, warmup, duration, record, start)
        busy_after, total_after = cpu_times()
        processes_after = process_cpu(attribution)
        stop_lag.set()
        await snapshots[1]
    finally:
        await close_all(sessions)
    processes_before, (busy_before, total_before) = snapshots[0]
    return LevelResult(
        clients=clients,
        latencies=[value for values in latencies for value in values],
        errors=sum(errors, Counter()),
        elapsed=elapsed,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
        cpu=cpu_by_group(processes_before, processes_after, busy_after - busy_before),
        loop_lag_ms=lag_ms,
    )


async def closed_loop(
    sessions: Sequence[aiohttp.ClientSession],
    path: str,
    warmup: int,
    duration: float,
    record: Callable[[int, str | None, float], None],
    start: Callable[[], None],
) -> float:
    """Each session POSTs to `path` back to back: `warmup` untimed requests (opening its
    connection), then, all together once `start()` has run, for `duration` seconds, telling
    `record(index, error or None, seconds)` of each timed request. Returns the timed part's
    length in seconds."""
    ready = asyncio.Barrier(len(sessions) + 1)
    go = asyncio.Event()
    deadline = 0.0

    async def client(index: int) -> None:
        session = sessions[index]
        try:
            for _ in range(warmup):
                await post_once(session, path)
            await ready.wait()
        except BaseException:
            await ready.abort()
            raise
        await go.wait()
        while (started := time.perf_counter()) < deadline:
            error = await post_once(session, path)
            record(index, error, time.perf_counter() - started)

    tasks = [asyncio.ensure_future(client(index)) for index in range(len(sessions))]
    await ready.wait()
    start()
    began = time.perf_counter()
    deadline = began + duration
    go.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - began


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process `root` and its children (a gunicorn master and
    its workers) so far."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if root in (int(stat.parent.name), int(fields[1])):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def side_by_side_round(
    app: Server,
    lean: Server,
    users: Sequence[BenchUser],
    clients: int,
    duration: float,
    warmup: int,
) -> SideBySide:
    """`clients` closed-loop consume clients, alternately on the app and on the HTTP ceiling,
    for `duration` seconds: both servers share the CPUs over the same seconds, so the box's
    speed, which drifts between runs, cancels out of the ratio of their CPU per request."""
    servers = (app, lean)
    sessions = [
        new_session(servers[index % 2].base_url, HTTP_TIMEOUT, bearer(users[index]))
        for index in range(clients)
    ]
    served, errors = [0, 0], [0]
    before: list[float] = []

    def record(index: int, error: str | None, seconds: float) -> None:
        if error is None:
            served[index % 2] += 1
        else:
            errors[0] += 1

    try:
        await closed_loop(
            sessions,
            CONSUME_PATH,
            warmup,
            duration,
            record,
            lambda: before.extend(tree_cpu_seconds(s.pid) for s in servers),
        )
        after = [tree_cpu_seconds(server.pid) for server in servers]
    finally:
        await close_all(sessions)
    cpu = [(end - start) * 1000 for start, end in zip(before, after, strict=True)]
    return SideBySide(
        clients,
        served[0],
        served[1],
        cpu[0] / served[0] if served[0] else math.nan,
        cpu[1] / served[1] if served[1] else math.nan,
        errors[0],
    )


def smoke_test(base_url: str, user: BenchUser, browser: dict[str, str]) -> None:
    """One request per route, so a misconfiguration fails loudly. Raises RuntimeError."""
    for path, headers in (
        (CONSUME_PATH, bearer(user)),
        (PLAIN_PATH, browser),
        (CREDIT_PATH, browser),
    ):
        body = {"feature": FEATURE, "generation_id": f"bench-{uuid.uuid4().hex}"}
        response = httpx.post(base_url + path, json=body, headers=headers, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(
                f"POST {path} answered {response.status_code}: {response.text[:500]}"
            )


# --- the report -------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def level_table(
    results: Sequence[LevelResult], unit: str = "req", with_connections: bool = False
) -> list[str]:
    header = [
        "clients",
        "requests" if unit == "req" else "operations",
        "errors",
        f"{unit}/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
    ]
    if with_connections:
        header.insert(1, "DB connections")
    rows = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for result in results:
        cells = [
            str(result.clients),
            str(result.ok + result.error_count),
            result.error_summary(),
            f"{result.throughput:.0f}",
            fmt_ms(result.percentile_ms(50)),
            fmt_ms(result.percentile_ms(95)),
            fmt_ms(result.percentile_ms(99)),
            fmt_ms(result.percentile_ms(100)),
        ]
        if with_connections:
            cells.insert(1, str(result.connections))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def delta_ms(without: LevelResult, with_check: LevelResult, p: float) -> float:
    return with_check.percentile_ms(p) - without.percentile_ms(p)


def overhead_table(plain: Sequence[LevelResult], credit: Sequence[LevelResult]) -> list[str]:
    rows = [
        "| clients | view | req/s | errors | p50 ms | p95 ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for without, with_check in zip(plain, credit, strict=True):
        for name, result in (
            ("plain `@login_required`", without),
            ("`@credit_required` + commit", with_check),
        ):
            rows.append(
                f"| {result.clients} | {name} | {result.throughput:.0f} | "
                f"{result.error_summary()} | {fmt_ms(result.percentile_ms(50))} | "
                f"{fmt_ms(result.percentile_ms(95))} | "
                f"{fmt_ms(result.percentile_ms(99))} |"
            )
        rows.append(
            f"| {without.clients} | **difference** | "
            f"{with_check.throughput - without.throughput:+.0f} | | "
            f"**{delta_ms(without, with_check, 50):+.1f}** | "
            f"**{delta_ms(without, with_check, 95):+.1f}** | "
            f"{delta_ms(without, with_check, 99):+.1f} |"
        )
    return rows


def side_by_side_table(rounds: Sequence[SideBySide]) -> list[str]:
    rows = [
        "| round | clients | app consumes | app CPU ms/consume | ceiling consumes | "
        "ceiling CPU ms/consume | app / ceiling | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, result in enumerate(rounds, start=1):
        rows.append(
            f"| {number} | {result.clients} | {result.app_requests} | "
            f"{result.app_cpu_ms:.2f} | {result.lean_requests} | "
            f"{result.lean_cpu_ms:.2f} | {result.ratio:.2f} | {result.errors} |"
        )
    if rounds:
        rows.append(f"| **median** | | | | | | **{median_ratio(rounds):.2f}** | |")
    return rows


def median_ratio(rounds: Sequence[SideBySide]) -> float:
    ratios = sorted(result.ratio for result in rounds)
    return ratios[len(ratios) // 2] if ratios else math.nan


def measured_levels(report: Report) -> list[tuple[str, LevelResult]]:
    named = [("SQL ceiling", result) for result in report.raw]
    named += [("HTTP ceiling", result) for result in report.lean]
    named += [("consume", result) for result in report.consume]
    for without, with_check in zip(report.plain, report.credit, strict=True):
        named += [("probe, plain", without), ("probe, @credit_required", with_check)]
    return named


def cpu_table(report: Report) -> list[str]:
    rows = [
        "| measurement | clients | machine busy | "
        + " | ".join(CPU_GROUPS)
        + " | gunicorn CPU ms/op | PostgreSQL CPU ms/op |",
        "|---|" + "---:|" * (len(CPU_GROUPS) + 4),
    ]
    for name, result in measured_levels(report):
        shares = " | ".join(f"{result.cpu_share(group):.0%}" for group in CPU_GROUPS)
        rows.append(
            f"| {name} | {result.clients} | {result.machine_busy:.0%} | {shares} | "
            f"{fmt_ms(result.cpu_ms_per_op('gunicorn'))} | "
            f"{fmt_ms(result.cpu_ms_per_op('PostgreSQL'))} |"
        )
    return rows


def clients_label(count: int) -> str:
    return f"{count} client" if count == 1 else f"{count} clients"


def verdict(value: float, target: float) -> str:
    return f"{fmt_ms(value)} ms ({'meets' if value < target else 'misses'} < {target:.0f} ms)"


def target_lines(report: Report) -> list[str]:
    """One line per measured level against the spec's latency targets."""
    api, operation, check = (
        TARGETS_MS["api"],
        TARGETS_MS["credit_operation"],
        TARGETS_MS["credit_check"],
    )
    lines = [
        f"- **API < {api:.0f} ms**, consume with {clients_label(result.clients)}: p95 "
        f"{verdict(result.percentile_ms(95), api)}, {result.throughput:.0f} req/s."
        for result in report.consume
    ]
    lines += [
        f"- **Credit check < {check:.0f} ms**, {clients_label(without.clients)}: "
        f"`@credit_required` (reserve + commit) adds {delta_ms(without, with_check, 50):+.1f} ms "
        f"at p50 and {verdict(delta_ms(without, with_check, 95), check)} at p95; the whole "
        f"decorated request's p95 is {fmt_ms(with_check.percentile_ms(95))} ms."
        for without, with_check in zip(report.plain, report.credit, strict=True)
    ]
    lines += [
        f"- **Credit operations < {operation:.0f} ms**, the SQL of one consume with "
        f"{clients_label(result.clients)}: p95 {verdict(result.percentile_ms(95), operation)}, "
        f"{result.throughput:.0f} ops/s."
        for result in report.raw
    ]
    return lines


def server_waiting_sentence(gunicorn: dict[str, str]) -> str:
    """Where a request waits for its turn in the server, by worker class."""
    if uses_greenlets(gunicorn):
        return (
            f"The server ({describe_gunicorn(gunicorn)}) accepts every connection and "
            "serves each request in a greenlet, so requests wait inside the workers for "
            "the CPU and the database pool; the client-side timer includes that wait."
        )
    threads = int(gunicorn["workers"]) * int(gunicorn["threads"])
    return (
        f"The server has {threads} request threads; other requests wait in the listen "
        "backlog, and the client-side timer includes that wait."
    )


def lag_line(report: Report) -> str:
    """The load client's event-loop lag in each HTTP level, or "" when none was measured."""
    named = [(name, result) for name, result in measured_levels(report) if result.loop_lag_ms]
    if not named:
        return ""
    parts = [
        f"{name}, {clients_label(result.clients)}: p99 "
        f"{fmt_ms(percentile(result.loop_lag_ms, 99))} ms, max "
        f"{fmt_ms(percentile(result.loop_lag_ms, 100))} ms"
        for name, result in named
    ]
    return (
        "- The load client's event-loop lag (how late a 100 ms timer fired; every HTTP "
        "latency above includes it): " + "; ".join(parts) + "."
    )


def analysis_lines(report: Report) -> list[str]:
    """What the figures say about where the time goes, computed from this run."""
    lines: list[str] = []
    http = {result.clients: result for result in report.consume}
    raw = {result.clients: result for result in report.raw}
    if 1 in http and 1 in raw:
        http_p50, sql_p50 = http[1].percentile_ms(50), raw[1].percentile_ms(50)
        lines.append(
            f"- With one client a consume request takes {fmt_ms(http_p50)} ms at p50; the same "
            f"SQL sent directly takes {fmt_ms(sql_p50)} ms ({sql_p50 / http_p50:.0%} of it). "
            "The rest is the request path: gunicorn, Flask, the bearer-token look-up, the rate "
            "limiter's Redis calls, SQLAlchemy, the service's hooks on a ledger write and JSON."
        )
    if report.consume:
        top = max(report.consume, key=lambda result: result.throughput)
        per_request = {group: top.cpu_ms_per_op(group) for group in CPU_GROUPS[:4]}
        total = sum(per_request.values())
        lines.append(
            f"- CPU per consume request (at {clients_label(top.clients)}, the best throughput): "
            + ", ".join(f"{group} {fmt_ms(value)} ms" for group, value in per_request.items())
            + f"; {fmt_ms(total)} ms in all. On {cpu_count()} CPUs that caps this box at about "
            f"{cpu_count() * 1000 / total:.0f} req/s whatever the concurrency, and the "
            + (
                "gunicorn workers (Python) are the largest part."
                if per_request["gunicorn"] == max(per_request.values())
                else "largest part is not the Python workers."
            )
        )
    if 1 in http and len(report.consume) > 1:
        top = max(report.consume, key=lambda result: result.throughput)
        most = max(report.consume, key=lambda result: result.clients)
        lines.append(
            f"- Consume throughput goes from {http[1].throughput:.0f} req/s with one client to "
            f"at most {top.throughput:.0f} req/s ({clients_label(top.clients)}). Once the CPUs "
            "are saturated more clients only wait longer: in a closed loop the mean latency is "
            f"clients / throughput, e.g. {most.clients} / {most.throughput:.0f} req/s = "
            f"{most.clients / most.throughput * 1000:.0f} ms at {most.clients} clients. "
            + server_waiting_sentence(report.gunicorn)
        )
    shares = [
        f"{clients_label(clients)}: {http[clients].throughput:.0f} req/s = "
        f"{http[clients].throughput / raw[clients].throughput:.0%} of "
        f"{raw[clients].throughput:.0f} ops/s"
        for clients in http
        if clients in raw and raw[clients].throughput
    ]
    if shares:
        below = all(
            http[clients].throughput < raw[clients].throughput for clients in http if clients in raw
        )
        lines.append(
            "- HTTP throughput against the SQL ceiling at the same concurrency: "
            + "; ".join(shares)
            + "."
            + (" The database alone is never the limit." if below else "")
        )
    if report.plain:
        without, with_check = max(
            zip(report.plain, report.credit, strict=True), key=lambda pair: pair[0].clients
        )
        worker_ms, database_ms = (
            with_check.cpu_ms_per_op(group) - without.cpu_ms_per_op(group)
            for group in ("gunicorn", "PostgreSQL")
        )
        lines.append(
            f"- `@credit_required` costs {worker_ms:.1f} ms of worker CPU and {database_ms:.1f} "
            f"ms of PostgreSQL CPU per request ({clients_label(without.clients)}). Its added "
            "latency under load is "
            f"mostly that cost multiplied by queueing: {without.throughput:.0f} req/s without "
            f"it against {with_check.throughput:.0f} req/s with it."
        )
    lean = {result.clients: result for result in report.lean}
    both = [clients for clients in http if clients in lean and lean[clients].throughput]
    if both:
        top = max(both, key=lambda clients: lean[clients].throughput)
        lines.append(
            f"- The HTTP ceiling at {clients_label(top)}: {lean[top].throughput:.0f} req/s at "
            f"{fmt_ms(lean[top].cpu_ms_per_op('gunicorn'))} ms of gunicorn CPU per consume, "
            f"against the app's {http[top].throughput:.0f} req/s at "
            f"{fmt_ms(http[top].cpu_ms_per_op('gunicorn'))} ms (measured one after the other)."
        )
    if report.side_by_side:
        ratio = median_ratio(report.side_by_side)
        lines.append(
            f"- Side by side, the app's gunicorn CPU per consume is {ratio:.2f} "
            "times the ceiling's (median of the rounds): what the app's request id and log, "
            "metrics, security headers, sessions, CSRF checks, compression check, rollout, "
            "events and notifications and its ORM-capable transaction cost on top of the work."
        )
    lag = lag_line(report)
    if lag:
        lines.append(lag)
    noisy = max(measured_levels(report), key=lambda item: item[1].cpu_share("other"), default=None)
    if noisy is not None:
        name, result = noisy
        lines.append(
            f"- The load generator, server and databases share the same {cpu_count()} CPUs, so "
            "these are figures for this box, not for a server on its own hardware. Other "
            f"processes used up to {result.cpu_share('other'):.0%} of the machine (during "
            f"{name}, {clients_label(result.clients)}); see the CPU table."
        )
    return lines


def render(report: Report) -> str:
    """This benchmark's section of docs/performance.md, entirely from this run's figures."""
    parts = [
        SECTION_START,
        "## The credit path: consume, `@credit_required`, the SQL and HTTP ceilings",
        "",
        "Generated by `bench/credits.py`; every figure in this section comes from the run "
        "dated here. Do not edit by hand: rerun the benchmark instead.",
        "",
        f"- Date: {report.started:%Y-%m-%d %H:%M} UTC (the run took {report.runtime:.0f} s)",
        *[f"- {name}: {value}" for name, value in report.machine.items()],
        *[f"- {name}: {value}" for name, value in report.settings.items()],
        "",
        "### How to reproduce",
        "",
        "From the project root, with the project installed (`pip install -e '.[dev]'`):",
        "",
        "```sh",
        "python -m bench.credits            # or: .venv/bin/python bench/credits.py",
        "python -m bench.credits --help     # duration, client counts, gunicorn size, output",
        "```",
        "",
        "Without DATABASE_URL / REDIS_URL the embedded servers under `instance/` are used; "
        "set them to benchmark other servers. The script runs `flask --app app db upgrade`, "
        "finds or registers the users `bench-<n>@bench.example.com` (one per client, each topped "
        "up to a large balance and given a fresh API token), measures the SQL ceiling, starts "
        "`gunicorn bench.probe_app:app --config gunicorn.conf.py` on a free port with "
        f'RATELIMIT_API and RATELIMIT_CONSUME raised to "{UNLIMITED_RATE}", measures over '
        "HTTP and stops the server. Each level is a closed loop: every client sends its next "
        "request as soon as the previous one is answered, for "
        f"{report.duration:.0f} s, after a short untimed warm-up; all clients start the timed "
        "part together. The HTTP clients are coroutines of one asyncio event loop using "
        f"aiohttp {aiohttp.__version__} (a thread per client with a synchronous client cost "
        "several times more client CPU per request, taken from the server on this box); the "
        "SQL ceiling's clients are threads. Latency is timed in the "
        "client from sending the request to reading the whole response; percentiles are "
        "nearest-rank over the successful requests; errors are non-200 answers.",
        "",
        "### 1. POST /api/user/credits/consume",
        "",
        "Each client is a separate user with its own `Authorization: Bearer` token and "
        "aiohttp session with one keep-alive connection; every request carries a fresh "
        "`generation_id`.",
        "",
        *level_table(report.consume),
        "",
        "### 2. Overhead of `@credit_required`",
        "",
        "The two routes of `bench/probe_app.py`, registered only in the benchmark app: a plain "
        f"`@login_required` view (`POST {PLAIN_PATH}`) and the same view behind "
        f'`@credit_required("{FEATURE}")` that commits the reservation with '
        f"`credits.commit_reservation` and `db.session.commit()` (`POST {CREDIT_PATH}`). "
        "Both answer a small JSON object, authenticate with a signed-in browser's session "
        "(as a generation does), are CSRF-exempt and have no rate limit, so the difference is "
        "the reservation and its commit.",
        "",
        *overhead_table(report.plain, report.credit),
        "",
        "### 3. The SQL ceiling",
        "",
        "The ledger statements `consume_credit` runs for a request with a `generation_id`, "
        "sent directly through psycopg 3, one transaction per operation: `SELECT … FROM users "
        "… FOR UPDATE`, then `POST_FIRST_USE_DRAW_SQL`, one statement that, if the generation "
        "id has no spend and no hold yet (its idempotency guard), inserts the ledger row and "
        "its analytics event, sets the balance and draws the credit from the user's live lots "
        "(spend order) with its lot movement, then `COMMIT`. Everything else a consume request "
        "does (authentication, rate limiting, hooks the service runs on a ledger write) is only in "
        "the HTTP figures. Each client thread has its own connection while "
        "the server has enough free connections; above that the threads share as many as it "
        "allows (DB connections column), first come first served, and the wait counts in the "
        "latency (psycopg_pool is not installed).",
        "",
        *level_table(report.raw, unit="op", with_connections=True),
        "",
        "### 4. The HTTP ceiling: the same endpoints with nothing but their work",
        "",
        "`bench/lean_api.py` serves `POST /api/user/credits/consume` (and the balance GET) "
        "with only the work the app's consume does for the database and Redis: the bearer "
        "token's owner, the rate-limit script, the lock and `POST_FIRST_USE_DRAW_SQL` in one "
        "transaction, `COMMIT`, one PUBLISH and JSON, on the same "
        "Flask, psycopg, redis-py and gunicorn configuration. It has no request log, metrics, "
        "security headers, sessions, CSRF, compression, replays, rollout or notifications: "
        "it is what this box can do at best with this stack, measured in this run.",
        "",
        *level_table(report.lean),
        "",
        "### 5. Side by side: the app against the HTTP ceiling",
        "",
        "Both servers at the same time, each taking half of the clients' closed-loop "
        "consumes, and each server's CPU (master and workers, from `/proc`) divided by the "
        "consumes it answered. Measured over the same seconds, the ratio does not depend on "
        "how fast the box runs that minute, which drifts by half between runs here.",
        "",
        *side_by_side_table(report.side_by_side),
        "",
        "### Where the CPU goes",
        "",
        "Shares of the whole machine's CPU time during each level, by process (from "
        "`/proc`): the load generator itself (the asyncio HTTP clients, or the SQL ceiling's "
        "threads), the gunicorn master and workers, the "
        "PostgreSQL server under test (its backends for other databases, such as a test "
        "run's, count as other), the Redis server under test, and everything else, including "
        "processes that exited during the level. The last two columns divide CPU time by the "
        'successful operations. A large "other" share means other work on the machine '
        "competed with the benchmark in that level.",
        "",
        *cpu_table(report),
        "",
        "### Interpretation",
        "",
        "Targets from the spec: credit check < 50 ms, API < 200 ms, credit operations "
        "< 100 ms. Verdicts use p95.",
        "",
        *target_lines(report),
        "",
        *analysis_lines(report),
        SECTION_END,
    ]
    return "\n".join(parts)


def print_summary(report: Report) -> None:
    for title, lines in (
        ("consume over HTTP", level_table(report.consume)),
        ("@credit_required overhead", overhead_table(report.plain, report.credit)),
        ("SQL ceiling", level_table(report.raw, unit="op", with_connections=True)),
        ("CPU by process", cpu_table(report)),
    ):
        print(f"\n{title}\n" + "\n".join(lines))


# --- main -------------------------------------------------------------------------------


def parse_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("expected positive whole numbers, e.g. 1,50,200")
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per level (default 10)"
    )
    parser.add_argument(
        "--clients",
        type=parse_counts,
        default=[1, 50, 200],
        help="client counts for consume and the SQL ceiling (default 1,50,200)",
    )
    parser.add_argument(
        "--probe-clients",
        type=parse_counts,
        default=[1, 50],
        help="client counts for the @credit_required probe (default 1,50)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="gunicorn workers: sets WEB_CONCURRENCY (default: as set, else gunicorn.conf.py's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads per gthread worker: sets GUNICORN_THREADS (default: as "
        "set, else gunicorn.conf.py's; gevent workers do not use it). "
        "The worker class is GUNICORN_WORKER_CLASS's (gunicorn.conf.py: "
        "gevent unless set, e.g. GUNICORN_WORKER_CLASS=gthread)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="at most this many seconds before each level, wait for the "
        f"machine to be under {QUIET_BUSY * 100:.0f} percent busy "
        "(default 20; 0: do not wait)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed operations per client before each level (default 2)",
    )
    parser.add_argument(
        "--side-by-side-rounds",
        type=int,
        default=3,
        help="rounds of the app and the HTTP ceiling served at once (default 3; 0: skip)",
    )
    parser.add_argument(
        "--side-by-side-clients",
        type=int,
        default=50,
        help="clients of a side-by-side round, half on each (default 50)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="the Markdown report whose credit-path section to rewrite "
        "(default docs/performance.md)",
    )
    return parser.parse_args(argv)


def announce(message: str) -> None:
    print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clock = time.perf_counter()
    started = datetime.now(UTC)
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    os.chdir(PROJECT_ROOT)

    from credit_app import create_app
    from credit_app.platform.config import instance_path

    announce("migrating the database …")
    migrate_database()
    app = create_app()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    conninfo = psycopg_conninfo(app)
    user_count = max([*args.clients, *args.probe_clients, args.side_by_side_clients])
    announce(f"preparing {user_count} bench users …")
    users = prepare_users(app, user_count)
    attribution = find_attribution(app, conninfo)
    env = server_environment(args.workers, args.threads, free_port())
    gunicorn = gunicorn_settings(env, gunicorn_command())
    if args.threads is not None and uses_greenlets(gunicorn):
        announce(
            f"note: {gunicorn['worker_class']} workers do not use threads; --threads has no effect"
        )
    report = Report(
        started=started,
        machine=describe_machine(app, conninfo),
        settings={
            "Gunicorn": (
                f"{describe_gunicorn(gunicorn)}, keep-alive {gunicorn['keepalive']} "
                "s (gunicorn.conf.py under this environment)"
            ),
            "Database pool per worker": (
                f"{app.config['SQLALCHEMY_ENGINE_OPTIONS']['pool_size']} + "
                f"{app.config['SQLALCHEMY_ENGINE_OPTIONS']['max_overflow']} overflow"
            ),
            "Duration per level": f"{args.duration:.0f} s",
            "Load average at the start (1 / 5 / 15 min)": load,
            "Code": describe_code(),
            "Before each level": (
                f"waited up to {args.settle:.0f} s for a second with the "
                f"machine under {QUIET_BUSY:.0%} busy"
            ),
        },
        duration=args.duration,
        gunicorn=gunicorn,
    )

    for clients in args.clients:
        announce(f"SQL ceiling, {clients} client(s) …")
        wait_for_quiet(args.settle)
        report.raw.append(
            measure_raw(conninfo, users, clients, args.duration, args.warmup, attribution)
        )

    log_path = instance_path() / "bench-gunicorn.log"
    announce(f"starting gunicorn ({describe_gunicorn(gunicorn)}), log in {log_path} …")
    from bench.load import session_cookies

    browsers = [
        browser_session(cookie)
        for cookie in session_cookies(app, users[: max(args.probe_clients, default=1)], env["BIND"])
    ]

    def measure(
        target: Server, path: str, clients: int, headers: Sequence[dict[str, str]] | None = None
    ) -> LevelResult:
        """One HTTP level of this run's users and settings (http_level)."""
        return asyncio.run(
            http_level(
                target, path, users, clients, args.duration, args.warmup, attribution, headers
            )
        )

    with gunicorn_server(env, log_path) as server:
        smoke_test(server.base_url, users[0], browsers[0])
        for clients in args.clients:
            announce(f"consume, {clients} client(s) …")
            wait_for_quiet(args.settle)
            report.consume.append(measure(server, CONSUME_PATH, clients))
        for clients in args.probe_clients:
            announce(f"@credit_required probe, {clients} client(s) …")
            for path, results in ((PLAIN_PATH, report.plain), (CREDIT_PATH, report.credit)):
                wait_for_quiet(args.settle)
                results.append(measure(server, path, clients, browsers))
        lean_env = server_environment(args.workers, args.threads, free_port())
        lean_log = instance_path() / "bench-gunicorn-lean.log"
        announce(f"starting the HTTP ceiling (bench/lean_api.py), log in {lean_log} …")
        with gunicorn_server(lean_env, lean_log, LEAN_TARGET) as lean:
            for clients in args.clients:
                announce(f"HTTP ceiling, {clients} client(s) …")
                wait_for_quiet(args.settle)
                report.lean.append(measure(lean, CONSUME_PATH, clients))
            for round_number in range(args.side_by_side_rounds):
                announce(f"side by side, round {round_number + 1} …")
                wait_for_quiet(args.settle)
                report.side_by_side.append(
                    asyncio.run(
                        side_by_side_round(
                            server,
                            lean,
                            users,
                            args.side_by_side_clients,
                            args.duration,
                            args.warmup,
                        )
                    )
                )

    report.runtime = time.perf_counter() - clock
    print_summary(report)
    write_section(args.output, render(report), SECTION_START, SECTION_END)
    announce(f"\nwrote the credit-path section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
