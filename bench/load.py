"""The 1,000-user load test of issue 9: an open model with think time, against a real
gunicorn, rq worker, PostgreSQL and Redis.

Two profiles, run one after the other by default:

- api: every user has its own API token and keep-alive connection and loops on: think
  (exponential, mean T), GET /api/user/credits, POST /api/user/credits/consume with a fresh
  generation_id. One level per think time (default T = 5 s, then T = 2.5 s).
- browser: every user keeps the dashboard's credit websocket (/ws/credits) open and loops on:
  think (mean T = 10 s), then loads the dashboard, loads a feature page, or starts a
  generation through a feature page (the form POST holds the credit, the rq worker runs the
  local provider and commits it). Measured besides page latency: the delay of every credit
  push to the socket, and how many sockets stay open.

Also measured in the same run: the raw-SQL ceiling (bench/credits.py's), CPU per request by
process from /proc, and the ledger audit afterwards; the bench exits 1 if the audit is not
clean. It writes its own section of docs/performance.md (between the `load` markers).

    python -m bench.load                       the full run (1,000 users, 60 s a level)
    python -m bench.load --quick               a smoke run (100 users, 15 s a level)
    python -m bench.load --help                everything else

gunicorn is sized by WEB_CONCURRENCY / GUNICORN_THREADS (or --workers / --threads) and by
gunicorn.conf.py; GUNICORN_CMD_ARGS overrides any other setting (e.g. the worker class), and
the report states what gunicorn ran with.

The load client is one asyncio process (aiohttp, whose C HTTP parser costs the least CPU per
request of the clients at hand); its own CPU is measured and reported like the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import io
import logging
import math
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psycopg
from flask import Flask

from bench.credits import (
    API_CLIENT_IDLE_SECONDS,
    Attribution,
    BenchUser,
    LevelResult,
    close_all,
    cpu_count,
    cpu_times,
    describe_code,
    describe_machine,
    find_attribution,
    fmt_ms,
    free_port,
    gunicorn_settings,
    log_tail,
    measure_raw,
    migrate_database,
    new_session,
    postgres_database,
    prepare_users,
    psycopg_conninfo,
    wait_until_up,
    watch_loop_lag,
)
from bench.credits import level_table as ceiling_table
from bench.report import percentile, write_section
from credit_app.generation.features import FEATURES
from credit_app.generation.options import ROOM_TYPES, styles_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "performance.md"
SECTION_START, SECTION_END = "<!-- load:start -->", "<!-- load:end -->"
CREDITS_PATH = "/api/user/credits"
CONSUME_PATH = "/api/user/credits/consume"
SOCKET_PATH = "/ws/credits"
UNLIMITED_RATE = "1000000 per minute"
BROWSER_AGENT = "Mozilla/5.0 (credit_app load benchmark)"
FILE_LIMIT_PER_USER = 4
PR_SET_PDEATHSIG = 1
# How long a browser's page connection is kept unused (aiohttp's default; an API client
# keeps its connection API_CLIENT_IDLE_SECONDS, longer than any think time).
BROWSER_CLIENT_IDLE_SECONDS = 15.0
CPU_GROUPS = ("load client", "gunicorn", "rq worker", "PostgreSQL", "Redis", "other")
# The features whose form the browser profile submits (still images: cheap for the local
# provider; the remove feature needs a mask and the video one renders many frames).
GENERATE_FEATURES = ("interior", "exterior", "sketch", "furnish")
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
GENERATION_FIELD = re.compile(r'name="generation_id"[^>]*value="([^"]+)"')
REMAINING = re.compile(r'data-remaining="(-?\d+)"')
TARGETS = {
    "api_5_consume_p99": 50.0,
    "api_5_get_p99": 30.0,
    "api_2.5_p99": 100.0,
    "browser_page_p99": 200.0,
    "browser_push_p95": 100.0,
}

log = logging.getLogger("bench.load")


# --- figures ---------------------------------------------------------------------------


@dataclass
class EndpointStats:
    """One endpoint's requests within a level: latencies (s) of the served ones, errors."""

    name: str = ""
    attempted: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def served(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000

    def error_summary(self) -> str:
        return ", ".join(f"{label}: {n}" for label, n in self.errors.most_common()) or "0"


@dataclass
class Level:
    """One measured level of one profile."""

    profile: str
    think: float
    users: int
    duration: float
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)
    elapsed: float = 0.0
    machine_busy: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    loop_lag_ms: list[float] = field(default_factory=list)
    # browser profile only
    sockets_opened: int = 0
    sockets_min_open: int = 0
    socket_errors: Counter[str] = field(default_factory=Counter)
    push_hold_ms: list[float] = field(default_factory=list)
    push_commit_ms: list[float] = field(default_factory=list)
    push_hold_after_response_ms: list[float] = field(default_factory=list)
    pushes_expected: int = 0
    pushes_missing: int = 0
    generations_started: int = 0
    generations_settled: int = 0

    def stats(self, name: str) -> EndpointStats:
        return self.endpoints.setdefault(name, EndpointStats(name))

    @property
    def served(self) -> int:
        return sum(stats.served for stats in self.endpoints.values())

    @property
    def errors(self) -> int:
        return (
            sum(stats.error_count for stats in self.endpoints.values())
            + sum(self.socket_errors.values())
            + self.pushes_missing
        )

    @property
    def offered_per_second(self) -> float:
        """Cycles per second the users would start if every answer were instant."""
        return self.users / self.think

    def cpu_ms_per_request(self, group: str) -> float:
        return self.cpu.get(group, 0.0) * 1000 / self.served if self.served else math.nan

    @property
    def label(self) -> str:
        return f"{self.profile}, {self.users} users, T = {self.think:g} s"


# --- CPU by process from /proc ----------------------------------------------------------


@dataclass(frozen=True)
class Processes:
    """The pids whose CPU time is split out: the server under test and its helpers."""

    attribution: Attribution
    gunicorn_pid: int | None = None
    worker_pid: int | None = None


def read_stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, own user+system ticks, reaped children's ticks) of `pid`, else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def cpu_snapshot(processes: Processes) -> dict[str, int]:
    """Clock ticks so far per group. A group is a root process, its live children and the
    children it has reaped (rq forks a work horse per job, PostgreSQL a backend per
    connection), so that work done by processes that exited in between is not lost."""
    own = os.getpid()
    attribution = processes.attribution
    roots = {
        processes.gunicorn_pid: "gunicorn",
        processes.worker_pid: "rq worker",
        attribution.postgres_pid: "PostgreSQL",
        attribution.redis_pid: "Redis",
    }
    roots.pop(None, None)
    ticks = dict.fromkeys(CPU_GROUPS, 0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = read_stat(pid)
        if stat is None:
            continue
        ppid, own_ticks, reaped = stat
        if pid == own:
            ticks["load client"] += own_ticks
        elif pid in roots:
            ticks[roots[pid]] += own_ticks + reaped
        elif ppid in roots:
            group = roots[ppid]
            if group == "PostgreSQL" and postgres_database(pid) not in (None, attribution.database):
                group = "other"
            ticks[group] += own_ticks
    return ticks


class CpuMeter:
    """CPU seconds per group and the machine's busy share between start() and stop()."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self._before: dict[str, int] = {}
        self._machine: tuple[int, int] = (0, 0)

    def start(self) -> None:
        self._before = cpu_snapshot(self.processes)
        self._machine = cpu_times()

    def stop(self, level: Level) -> None:
        after = cpu_snapshot(self.processes)
        busy, total = cpu_times()
        hertz = os.sysconf("SC_CLK_TCK")
        seconds = {group: (after[group] - self._before[group]) / hertz for group in CPU_GROUPS}
        machine_busy = (busy - self._machine[0]) / hertz
        known = sum(value for group, value in seconds.items() if group != "other")
        seconds["other"] = max(seconds["other"], machine_busy - known)
        level.cpu = seconds
        level.machine_busy = (busy - self._machine[0]) / max(1, total - self._machine[1])


# --- processes: gunicorn and the rq worker -----------------------------------------------


def raise_file_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards `needed` (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def server_environment(args: argparse.Namespace, port: int) -> dict[str, str]:
    """The environment of gunicorn and the worker: the app's, rate limits raised, sized by
    the flags where given (else by WEB_CONCURRENCY / GUNICORN_THREADS as set, else by
    gunicorn.conf.py's defaults)."""
    env = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "ACCESS_LOG": "0",
        "GENERATION_PROVIDER": "local",
        **{
            name: UNLIMITED_RATE
            for name in (
                "RATELIMIT_API",
                "RATELIMIT_CONSUME",
                "RATELIMIT_GENERATE",
                "RATELIMIT_AUTH",
            )
        },
    }
    if args.workers is not None:
        env["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads is not None:
        env["GUNICORN_THREADS"] = str(args.threads)
    return env


APP_TARGET = "app:app"
CEILING_TARGET = "bench.lean_api:app"
CEILING_PROFILE = "api, HTTP ceiling"


def gunicorn_command(args: argparse.Namespace, target: str = APP_TARGET) -> list[str]:
    command = [sys.executable, "-m", "gunicorn", target, "--config", "gunicorn.conf.py"]
    if args.keepalive is not None:
        command += ["--keep-alive", str(args.keepalive)]
    return command


def die_with_parent() -> None:
    """In a child before exec: receive SIGTERM when the bench dies, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL to its whole process group after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@dataclass(frozen=True)
class Server:
    host: str
    gunicorn_pid: int
    worker_pid: int | None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"


@contextlib.contextmanager
def app_processes(args: argparse.Namespace, env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    """gunicorn (app:app, gunicorn.conf.py) and `python worker.py`; both always stopped.

    Raises RuntimeError when gunicorn does not come up or the worker exits at once.
    """
    port = int(env["BIND"].rsplit(":", 1)[1])
    command = gunicorn_command(args)
    web_log, worker_log = log_dir / "bench-load-gunicorn.log", log_dir / "bench-load-worker.log"
    started: list[subprocess.Popen] = []
    with open(web_log, "w") as web_out, open(worker_log, "w") as worker_out:
        try:
            web = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=web_out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            started.append(web)
            worker = subprocess.Popen(
                [sys.executable, "worker.py"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=worker_out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            started.append(worker)
            wait_until_up(web, f"http://127.0.0.1:{port}", web_log)
            if worker.poll() is not None:
                raise RuntimeError(
                    f"the rq worker exited with {worker.returncode}:\n{log_tail(worker_log)}"
                )
            yield Server(f"127.0.0.1:{port}", web.pid, worker.pid)
        finally:
            for process in reversed(started):
                stop_process(process, grace=30)


@contextlib.contextmanager
def ceiling_server(
    args: argparse.Namespace, env: dict[str, str], log_dir: Path
) -> Iterator[Server]:
    """gunicorn serving bench/lean_api.py (the HTTP ceiling) with the app's configuration,
    on a port of its own; always stopped. Raises RuntimeError when it does not come up."""
    port = free_port()
    env = {**env, "BIND": f"127.0.0.1:{port}"}
    log_path = log_dir / "bench-load-ceiling.log"
    with open(log_path, "w") as out:
        web = subprocess.Popen(
            gunicorn_command(args, CEILING_TARGET),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            wait_until_up(web, f"http://127.0.0.1:{port}", log_path)
            yield Server(f"127.0.0.1:{port}", web.pid, None)
        finally:
            stop_process(web, grace=30)


# --- users -------------------------------------------------------------------------------


def signed_in_session(app: Flask, user_id: int, host: str, user_agent: str) -> tuple[str, str]:
    """The session cookie /login would set for the user (flask-login's login_user, with
    `user_agent` from 127.0.0.1, since session protection is "strong"), and the CSRF token
    it holds. Minted in-process, in a request context of its own (with its own app context,
    so that flask-wtf's per-context token cache does not hand one user's CSRF token to the
    next). Raises RuntimeError if flask does not set the cookie."""
    from flask import session
    from flask_login import login_user
    from flask_wtf.csrf import generate_csrf

    from credit_app.models import User
    from credit_app.platform.extensions import db

    cookie_name = app.config.get("SESSION_COOKIE_NAME", "session")
    with app.test_request_context(
        "/login",
        method="POST",
        base_url=f"http://{host}",
        headers={"User-Agent": user_agent},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    ):
        login_user(db.session.get(User, user_id))
        token = generate_csrf()
        response = app.response_class()
        app.session_interface.save_session(app, session, response)
        cookie = response.headers["Set-Cookie"].split(";", 1)[0]
        if not cookie.startswith(f"{cookie_name}=") or "csrf_token" not in session:
            raise RuntimeError(f"unexpected session cookie: {cookie[:40]}")
    return cookie, token


def session_cookies(app: Flask, users: Sequence[BenchUser], host: str) -> list[str]:
    """The session cookie of each user, with the benchmark's User-Agent (signed_in_session).
    Minted in-process so that 1,000 password hashes do not load the server before the
    measurement. Raises RuntimeError if flask does not set the cookie."""
    return [signed_in_session(app, user.user_id, host, BROWSER_AGENT)[0] for user in users]


def small_png() -> bytes:
    """A 96 x 96 PNG, the smallest photo the upload check accepts with some margin."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (180, 150, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the load client ---------------------------------------------------------------------


async def timed(stats: EndpointStats, request, expect: int = 200) -> tuple[bytes, float] | None:
    """Await one aiohttp request context; returns (body, elapsed seconds) when it answered
    `expect`, else records the error and returns None."""
    stats.attempted += 1
    started = time.perf_counter()
    try:
        async with request as response:
            body = await response.read()
            status = response.status
    except TimeoutError:
        stats.errors["timeout"] += 1
        return None
    except asyncio.CancelledError:
        stats.errors["cancelled at the level's backstop"] += 1
        raise
    except aiohttp.ClientError as exc:
        stats.errors[type(exc).__name__] += 1
        return None
    elapsed = time.perf_counter() - started
    if status != expect:
        label = f"HTTP {status}"
        if label not in stats.errors:
            log.warning(
                "first %s answer of %s: %s",
                label,
                stats.name or "a request",
                body[:300].decode(errors="replace"),
            )
        stats.errors[label] += 1
        return None
    stats.latencies.append(elapsed)
    return body, elapsed


async def ramp(count: int, seconds: float, start_one) -> list:
    """Start `start_one(i)` for every user, spread evenly over `seconds`; their results."""

    async def delayed(index: int):
        await asyncio.sleep(seconds * index / max(1, count))
        return await start_one(index)

    return await asyncio.gather(*(delayed(index) for index in range(count)), return_exceptions=True)


async def think_until(deadline: float, seconds: float) -> bool:
    """Think for `seconds`; False (at once at the deadline) when the level ends first."""
    loop = asyncio.get_running_loop()
    if loop.time() + seconds >= deadline:
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        return False
    await asyncio.sleep(seconds)
    return True


async def run_users(coroutines: Sequence, deadline: float, grace: float) -> None:
    """Run the users' loops; those still busy `grace` seconds after the deadline are
    cancelled (every request has its own timeout, so this is only a backstop)."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    loop = asyncio.get_running_loop()
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()) + grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            log.warning("a user loop failed: %r", task.exception())


async def api_profile(
    args: argparse.Namespace,
    server: Server,
    users: Sequence[BenchUser],
    meter: CpuMeter,
    profile: str = "api",
) -> list[Level]:
    """The api profile: one level per think time, the same users and connections throughout
    (`profile` names the levels: the app's, or the HTTP ceiling's)."""
    sessions = [
        new_session(
            server.base_url, args.request_timeout, {"Authorization": f"Bearer {user.token}"}
        )
        for user in users
    ]
    levels = []
    try:
        warmup = EndpointStats(f"warm-up cycle (GET {CREDITS_PATH}, POST {CONSUME_PATH})")

        async def warm_up(index: int) -> None:
            await api_cycle(sessions[index], warmup, warmup)

        await ramp(len(sessions), args.ramp, warm_up)
        if warmup.error_count:
            log.warning("warm-up errors: %s", warmup.error_summary())
        for think in args.think:
            print(
                f"{profile} profile: {len(users)} users, T = {think:g} s, {args.duration:g} s …",
                flush=True,
            )
            levels.append(await api_level(args, sessions, think, meter, profile))
            print(level_summary(levels[-1]), flush=True)
    finally:
        await close_all(sessions)
    return levels


async def api_cycle(
    session: aiohttp.ClientSession, get_stats: EndpointStats, consume_stats: EndpointStats
) -> None:
    """One cycle of an api user: its balance, then a consume with a fresh generation_id."""
    await timed(get_stats, session.get(CREDITS_PATH))
    body = {"feature": GENERATE_FEATURES[0], "generation_id": f"bench-load-{uuid.uuid4().hex}"}
    await timed(consume_stats, session.post(CONSUME_PATH, json=body))


async def api_level(
    args: argparse.Namespace,
    sessions: Sequence[aiohttp.ClientSession],
    think: float,
    meter: CpuMeter,
    profile: str = "api",
) -> Level:
    level = Level(profile, think, len(sessions), args.duration)
    get_stats, consume_stats = (
        level.stats(f"GET {CREDITS_PATH}"),
        level.stats(f"POST {CONSUME_PATH}"),
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.duration
    rng = random.Random(args.seed)

    async def user(session: aiohttp.ClientSession) -> None:
        while await think_until(deadline, rng.expovariate(1 / think)):
            await api_cycle(session, get_stats, consume_stats)

    stop_lag = asyncio.Event()
    lag = asyncio.ensure_future(watch_loop_lag(level.loop_lag_ms, stop_lag))
    meter.start()
    started = time.perf_counter()
    await run_users([user(session) for session in sessions], deadline, 2 * args.request_timeout + 5)
    level.elapsed = time.perf_counter() - started
    meter.stop(level)
    stop_lag.set()
    await lag
    return level


@dataclass
class BrowserUser:
    """One browser: its socket's messages (wall time, remaining) and its generations."""

    bench: BenchUser
    cookie: str
    session: aiohttp.ClientSession | None = None
    socket: aiohttp.ClientWebSocketResponse | None = None
    received: list[tuple[float, int]] = field(default_factory=list)
    posted: dict[str, float] = field(default_factory=dict)
    expected_messages: int = 0
    open: bool = False


async def read_socket(user: BrowserUser, level_errors: Counter[str]) -> None:
    """Record every counter push; a socket that closes before the end is an error."""
    assert user.socket is not None
    try:
        async for message in user.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            match = REMAINING.search(message.data)
            if match:
                user.received.append((time.time(), int(match.group(1))))
    except (aiohttp.ClientError, TimeoutError) as exc:
        level_errors[f"socket {type(exc).__name__}"] += 1
    finally:
        if user.open:
            user.open = False
            level_errors["socket closed by the server"] += 1


async def open_browser(
    user: BrowserUser, server: Server, args: argparse.Namespace, level: Level
) -> None:
    """The user's client and credit socket; the socket's first message is the counter."""
    user.session = new_session(
        server.base_url,
        args.request_timeout,
        {"Cookie": user.cookie, "User-Agent": BROWSER_AGENT},
        connections=2,
        idle=BROWSER_CLIENT_IDLE_SECONDS,
    )
    try:
        user.socket = await user.session.ws_connect(
            SOCKET_PATH,
            headers={"Origin": server.base_url},
            heartbeat=None,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5),
        )
        first = await user.socket.receive(timeout=args.request_timeout)
    except (aiohttp.ClientError, TimeoutError) as exc:
        level.socket_errors[f"socket connect {type(exc).__name__}"] += 1
        return
    if first.type != aiohttp.WSMsgType.TEXT or not REMAINING.search(first.data):
        level.socket_errors["socket without a first counter"] += 1
        return
    user.received.append((time.time(), int(REMAINING.search(first.data).group(1))))
    user.open = True
    level.sockets_opened += 1


async def browser_profile(
    args: argparse.Namespace, server: Server, users: Sequence[BrowserUser], meter: CpuMeter
) -> Level:
    """The browser profile: sockets opened over the ramp, then one level at args.browser_think."""
    think = args.browser_think
    level = Level("browser", think, len(users), args.duration)
    loop = asyncio.get_running_loop()
    readers: list[asyncio.Task] = []
    try:
        print(f"browser profile: opening {len(users)} sockets over {args.ramp:g} s …", flush=True)
        await ramp(
            len(users), args.ramp, lambda index: open_browser(users[index], server, args, level)
        )
        readers = [
            asyncio.ensure_future(read_socket(user, level.socket_errors))
            for user in users
            if user.open
        ]
        level.sockets_min_open = sum(user.open for user in users)
        print(
            f"browser profile: {level.sockets_opened} sockets open; T = {think:g} s, "
            f"{args.duration:g} s …",
            flush=True,
        )
        image = small_png()
        rng = random.Random(args.seed)
        deadline = loop.time() + args.duration
        dashboard = level.stats("GET /dashboard")
        feature_page = level.stats("GET /dashboard/<tool>")
        start_form = level.stats("POST /dashboard/<tool>")

        async def browse(user: BrowserUser) -> None:
            assert user.session is not None
            while await think_until(deadline, rng.expovariate(1 / think)):
                feature = FEATURES[rng.choice(GENERATE_FEATURES)]
                path = f"/dashboard/{feature.slug}"
                settled = len(user.received) - 1 >= user.expected_messages
                if rng.random() >= args.generate_share or not settled or not user.open:
                    if rng.random() < 0.5:
                        await timed(
                            dashboard, user.session.get("/dashboard", allow_redirects=False)
                        )
                    else:
                        await timed(feature_page, user.session.get(path, allow_redirects=False))
                    continue
                page = await timed(feature_page, user.session.get(path, allow_redirects=False))
                if page is None:
                    continue
                text = page[0].decode(errors="replace")
                csrf, generation = CSRF_FIELD.search(text), GENERATION_FIELD.search(text)
                if csrf is None or generation is None:
                    start_form.errors["feature page without its form"] += 1
                    continue
                form = aiohttp.FormData()
                form.add_field("csrf_token", csrf.group(1))
                form.add_field("generation_id", generation.group(1))
                form.add_field("feature", feature.key)
                form.add_field("room_type", rng.choice(list(ROOM_TYPES)))
                form.add_field("style", rng.choice(list(styles_for(feature.key))))
                form.add_field("prompt", "load benchmark")
                form.add_field("image", image, filename="room.png", content_type="image/png")
                user.expected_messages += 2
                level.generations_started += 1
                answered = await timed(
                    start_form,
                    user.session.post(
                        path,
                        data=form,
                        allow_redirects=False,
                        headers={"HX-Request": "true", "Origin": server.base_url},
                    ),
                )
                if answered is None:
                    user.expected_messages -= 2
                    level.generations_started -= 1
                else:
                    user.posted[generation.group(1)] = time.time()

        stop_lag = asyncio.Event()
        lag = asyncio.ensure_future(watch_loop_lag(level.loop_lag_ms, stop_lag))
        sockets = asyncio.ensure_future(count_open(users, level, stop_lag))
        meter.start()
        started = time.perf_counter()
        await run_users([browse(user) for user in users], deadline, 2 * args.request_timeout + 5)
        await settle(users, args.drain)
        level.elapsed = time.perf_counter() - started
        meter.stop(level)
        stop_lag.set()
        await asyncio.gather(lag, sockets)
    finally:
        for user in users:
            user.open = False
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await close_all([user.session for user in users if user.session is not None])
    return level


async def count_open(users: Sequence[BrowserUser], level: Level, stop: asyncio.Event) -> None:
    while not stop.is_set():
        level.sockets_min_open = min(level.sockets_min_open, sum(user.open for user in users))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def settle(users: Sequence[BrowserUser], seconds: float) -> None:
    """Wait up to `seconds` for the generations started to reach their sockets."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if all(len(user.received) - 1 >= user.expected_messages for user in users if user.open):
            return
        await asyncio.sleep(0.2)


def match_pushes(
    conninfo: str, users: Sequence[BrowserUser], first_ledger_id: int, level: Level
) -> None:
    """Pair each ledger row written during the level with the socket message it caused.

    A user's rows (ordered by id) and the messages after the socket's first one come in the
    same order, and each message shows the row's balance_after. A push's delay counts from
    the row's created_at, which PostgreSQL sets to the start of the writing transaction (the
    form POST's for a hold, the rq worker's for a commit or release), to the moment the
    socket's message was read: an upper bound of commit-to-receipt, since it also takes in
    the transaction's own time. A hold's push is also timed from the moment the POST's
    response was read (negative when the push came first).
    """
    by_id = {user.bench.user_id: user for user in users}
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT user_id, kind, balance_after, generation_id, "
            "extract(epoch FROM created_at)::float8 FROM credit_transactions "
            "WHERE id > %s AND user_id = ANY(%s) ORDER BY user_id, id",
            (first_ledger_id, list(by_id)),
        ).fetchall()
    pointers: dict[int, int] = dict.fromkeys(by_id, 1)
    for user_id, kind, balance_after, generation_id, created_at in rows:
        user = by_id[user_id]
        level.pushes_expected += 1
        index = pointers[user_id]
        if index >= len(user.received) or user.received[index][1] != balance_after:
            level.pushes_missing += 1
            continue
        pointers[user_id] = index + 1
        received_at = user.received[index][0]
        delay_ms = (received_at - created_at) * 1000
        if kind == "reserve":
            level.push_hold_ms.append(delay_ms)
            posted = user.posted.get(generation_id or "")
            if posted is not None:
                level.push_hold_after_response_ms.append((received_at - posted) * 1000)
        else:
            level.generations_settled += 1
            level.push_commit_ms.append(delay_ms)


def latest_ledger_id(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        return int(
            conn.execute("SELECT coalesce(max(id), 0) FROM credit_transactions").fetchone()[0]
        )


# --- the report --------------------------------------------------------------------------


@dataclass
class Report:
    started: datetime
    machine: dict[str, str]
    settings: dict[str, str]
    quick: bool
    levels: list[Level] = field(default_factory=list)
    ceiling: list[LevelResult] = field(default_factory=list)
    audit_ok: bool = False
    audit_summary: str = ""
    runtime: float = 0.0


def endpoint_table(levels: Sequence[Level]) -> list[str]:
    rows = [
        "| level | endpoint | offered cycles/s (level) | attempted | served | served/s "
        "| errors | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for level in levels:
        for name, stats in level.endpoints.items():
            rows.append(
                f"| {level.label} | `{name}` | {level.offered_per_second:.0f} | "
                f"{stats.attempted} | {stats.served} | {stats.served / level.duration:.0f} | "
                f"{stats.error_summary()} | {fmt_ms(stats.ms(50))} | {fmt_ms(stats.ms(95))} | "
                f"{fmt_ms(stats.ms(99))} | {fmt_ms(stats.ms(100))} |"
            )
    return rows


def push_table(levels: Sequence[Level]) -> list[str]:
    rows = ["| level | measure | value |", "|---|---|---:|"]
    for level in levels:
        if level.profile != "browser":
            continue
        both = level.push_hold_ms + level.push_commit_ms
        cells = [
            ("sockets opened / users", f"{level.sockets_opened} / {level.users}"),
            ("fewest sockets open during the level", str(level.sockets_min_open)),
            (
                "socket errors",
                ", ".join(f"{k}: {n}" for k, n in level.socket_errors.most_common()) or "0",
            ),
            (
                "generations started / settled (pushed commit or release)",
                f"{level.generations_started} / {level.generations_settled}",
            ),
            ("pushes expected / missing", f"{level.pushes_expected} / {level.pushes_missing}"),
        ]
        for name, values in (
            ("hold push (form POST) after the row's created_at", level.push_hold_ms),
            ("commit push (rq worker) after the row's created_at", level.push_commit_ms),
            ("all pushes after the row's created_at", both),
            ("hold push after the POST's response was read", level.push_hold_after_response_ms),
        ):
            cells.append(
                (
                    f"{name}: p50 / p95 / p99 / max ms ({len(values)})",
                    " / ".join(fmt_ms(percentile(values, p)) for p in (50, 95, 99, 100)),
                )
            )
        rows += [f"| {level.label} | {name} | {value} |" for name, value in cells]
    return rows


def cpu_table(levels: Sequence[Level]) -> list[str]:
    rows = [
        "| level | served req | machine busy | "
        + " | ".join(f"{group} CPU ms/req" for group in CPU_GROUPS)
        + " |",
        "|---|---:|---:|" + "---:|" * len(CPU_GROUPS),
    ]
    for level in levels:
        rows.append(
            f"| {level.label} | {level.served} | {level.machine_busy:.0%} | "
            + " | ".join(fmt_ms(level.cpu_ms_per_request(group)) for group in CPU_GROUPS)
            + " |"
        )
    return rows


def others_line(levels: Sequence[Level]) -> str:
    """How much of the machine other work took: the figures are only as clean as that."""
    parts = [
        f"{level.label}: {level.cpu.get('other', 0.0) / (level.elapsed * cpu_count()):.0%}"
        for level in levels
        if level.elapsed
    ]
    return (
        "- Share of the machine's CPU used by other processes (other developers' work, "
        "not the app): " + "; ".join(parts) + ". The load client, server and databases "
        f"share these {cpu_count()} CPUs; a large share inflates every latency above."
    )


def lag_line(levels: Sequence[Level]) -> str:
    parts = [
        f"{level.label}: p99 {fmt_ms(percentile(level.loop_lag_ms, 99))} ms, max "
        f"{fmt_ms(percentile(level.loop_lag_ms, 100))} ms"
        for level in levels
    ]
    return "- Load client's event-loop lag (how late a 100 ms timer fired): " + "; ".join(parts)


def level_summary(level: Level) -> str:
    """One line per level for the console while the run goes on."""
    parts = [
        f"{name} {stats.served}/{stats.attempted} p99 {fmt_ms(stats.ms(99))} ms"
        for name, stats in level.endpoints.items()
    ]
    return f"  {level.label}: " + "; ".join(parts) + f"; errors {level.errors}"


def find_level(levels: Sequence[Level], profile: str, think: float) -> Level | None:
    return next(
        (
            level
            for level in levels
            if level.profile == profile and math.isclose(level.think, think)
        ),
        None,
    )


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def target_lines(report: Report) -> list[str]:
    """The issue's targets, each with its verdict computed from this run's figures."""
    lines = []
    api5, api25 = find_level(report.levels, "api", 5.0), find_level(report.levels, "api", 2.5)
    browser = next((level for level in report.levels if level.profile == "browser"), None)
    get_name, consume_name = f"GET {CREDITS_PATH}", f"POST {CONSUME_PATH}"
    if api5 is not None:
        consume_p99, get_p99 = api5.stats(consume_name).ms(99), api5.stats(get_name).ms(99)
        lines.append(
            f"- api, T = 5 s: 0 errors, consume p99 <= {TARGETS['api_5_consume_p99']:.0f} ms, "
            f"GET p99 <= {TARGETS['api_5_get_p99']:.0f} ms. Measured: {api5.errors} errors, "
            f"consume p99 {fmt_ms(consume_p99)} ms, GET p99 {fmt_ms(get_p99)} ms: "
            + verdict(
                api5.errors == 0
                and consume_p99 <= TARGETS["api_5_consume_p99"]
                and get_p99 <= TARGETS["api_5_get_p99"]
            )
            + "."
        )
    else:
        lines.append("- api, T = 5 s: not measured in this run (see --think).")
    if api25 is not None:
        worst = max(stats.ms(99) for stats in api25.endpoints.values())
        lines.append(
            f"- api, T = 2.5 s: 0 errors, p99 <= {TARGETS['api_2.5_p99']:.0f} ms. Measured: "
            f"{api25.errors} errors, worst endpoint p99 {fmt_ms(worst)} ms: "
            + verdict(api25.errors == 0 and worst <= TARGETS["api_2.5_p99"])
            + "."
        )
    else:
        lines.append("- api, T = 2.5 s: not measured in this run (see --think).")
    if browser is not None:
        pages = max((stats.ms(99) for stats in browser.endpoints.values()), default=math.nan)
        pushes = browser.push_hold_ms + browser.push_commit_ms
        push_p95 = percentile(pushes, 95)
        sockets_ok = browser.sockets_min_open == browser.users == browser.sockets_opened
        lines.append(
            f"- browser, T = {browser.think:g} s: {browser.users} sockets open, page p99 <= "
            f"{TARGETS['browser_page_p99']:.0f} ms (worst of the dashboard, the feature page "
            f"and the form POST), push p95 <= {TARGETS['browser_push_p95']:.0f} ms, 0 errors. "
            f"Measured: {browser.sockets_opened} opened, at least {browser.sockets_min_open} "
            f"open throughout, page p99 {fmt_ms(pages)} ms, push p95 {fmt_ms(push_p95)} ms, "
            f"{browser.errors} errors (requests, sockets and missing pushes): "
            + verdict(
                sockets_ok
                and pages <= TARGETS["browser_page_p99"]
                and push_p95 <= TARGETS["browser_push_p95"]
                and browser.errors == 0
            )
            + "."
        )
    for think in (5.0, 2.5):
        ceiling = find_level(report.levels, CEILING_PROFILE, think)
        if ceiling is None:
            continue
        consume_p99 = ceiling.stats(f"POST {CONSUME_PATH}").ms(99)
        get_p99 = ceiling.stats(f"GET {CREDITS_PATH}").ms(99)
        lines.append(
            f"- For reference, the HTTP ceiling (bench/lean_api.py: the same two endpoints with "
            f"nothing but their work) under the same load, T = {think:g} s: {ceiling.errors} "
            f"errors, consume p99 {fmt_ms(consume_p99)} ms, GET p99 {fmt_ms(get_p99)} ms, "
            f"{fmt_ms(ceiling.cpu_ms_per_request('gunicorn'))} ms of gunicorn CPU per request "
            "(both endpoints): what this box allows with this stack in this run."
        )
    if any(level.users < 1000 for level in report.levels):
        lines.append(
            "- This run had fewer than 1,000 users (a --quick or reduced run): the "
            "targets are for 1,000 users, so these verdicts do not count."
        )
    return lines


def render(report: Report) -> str:
    """This benchmark's section of docs/performance.md, entirely from this run's figures."""
    parts = [
        SECTION_START,
        "## Load test: 1,000 users, open model (issue 9)",
        "",
        "Generated by `bench/load.py`; every figure here comes from the run dated below. Do not "
        "edit by hand: rerun `python -m bench.load` instead.",
        "",
        f"- Date: {report.started:%Y-%m-%d %H:%M} UTC (the run took {report.runtime:.0f} s)"
        + (" — **quick smoke run**" if report.quick else ""),
        *[f"- {name}: {value}" for name, value in report.machine.items()],
        *[f"- {name}: {value}" for name, value in report.settings.items()],
        "",
        "### Targets (issue 9)",
        "",
        *target_lines(report),
        "",
        "### How it is measured",
        "",
        "`python -m bench.load` migrates the database, finds or registers the users "
        "`bench-<n>@bench.example.com` (topped up to a large balance, each given a fresh API "
        "token), measures the raw-SQL ceiling of bench/credits.py, then starts "
        "`gunicorn app:app --config gunicorn.conf.py` on a free port and `python worker.py` "
        "(local generation provider), with every rate limit (RATELIMIT_API, RATELIMIT_CONSUME, "
        f'RATELIMIT_GENERATE, RATELIMIT_AUTH) raised to "{UNLIMITED_RATE}" (the limiter '
        "still counts every request in Redis; only its limits are out of reach). Both are "
        "stopped at the end, also on error. The load client is one asyncio process using aiohttp; "
        "each user has its own keep-alive connection. Users start spread over the ramp (an api "
        "user runs one untimed cycle as it starts, so that both endpoints' code and statements "
        "are warm in every worker before the first level), then each "
        "level lasts its duration; a user thinks (exponential, mean T) before each cycle, so the "
        "offered rate is users / T cycles a second while answers are fast, and less when they are "
        "slow (a user waits for its answers). Latency is timed in the client from sending a "
        "request to reading the whole response; percentiles are nearest-rank over the served "
        "requests; errors are any other status, connection errors and timeouts (each request has "
        "its own timeout). gunicorn's keep-alive is gunicorn.conf.py's unless --keepalive says "
        "otherwise (the settings above show it); a think time longer than it makes that user "
        "reconnect. On the client side an API user keeps its connection up to "
        f"{API_CLIENT_IDLE_SECONDS:.0f} s unused, a browser user its page connection up to "
        f"{BROWSER_CLIENT_IDLE_SECONDS:.0f} s (the socket is a second connection). "
        "aiohttp was chosen for its CPU cost: on this box it spent about "
        "0.09 ms of client CPU per request against httpx's 0.5 ms (AsyncClient), and its own "
        "CPU and event-loop lag are reported below.",
        "",
        "- api profile: each cycle is `GET /api/user/credits` then `POST "
        "/api/user/credits/consume` with a fresh generation_id (bearer token).",
        f"- {CEILING_PROFILE}: the same api profile, same users and seed, against "
        "`gunicorn bench.lean_api:app` (the same gunicorn configuration, no rq worker): the "
        "two endpoints with only their database and Redis work (bench/credits.py, section 4). "
        "It runs right after the app's api levels, so both see the box at about the same "
        "speed; its levels are not judged against the targets.",
        "- browser profile: each user holds `/ws/credits` open (session cookie: the cookie "
        "/login would set, minted in-process with flask-login's `login_user`, so that 1,000 "
        "password hashes do not run before the measurement). Each cycle loads the dashboard or "
        "a feature page, or (a share of cycles, when the user's previous generation has "
        "settled) loads a feature page and submits its form as htmx does, with the page's "
        "generation id and a small PNG: `@credit_required` holds the credit, the job is "
        "enqueued, the rq worker generates and commits it. Every ledger row written for the "
        "users during the level must reach the socket as a counter push; rows and pushes "
        "are paired in order per user and must show the same balance. A push's delay counts "
        "from the ledger row's created_at (PostgreSQL's now(): the start of the writing "
        "transaction, the form POST's for a hold, the rq worker's for a commit) to the moment "
        "the client read the socket message: an upper bound of commit-to-receipt, as it also "
        "takes in the transaction's own time; the target uses it. A hold's push is also timed "
        "from the moment the POST's response was read (negative: the push came first). The "
        "server and client share one clock. A missing push counts as an error. After "
        "the level the bench waits a bounded time for started generations to settle.",
        "- CPU by process from /proc: the load client, the gunicorn master and workers, the "
        "rq worker with its work horses, the PostgreSQL server under test (its backends of "
        "other databases count as other), Redis, and everything else; children that exited "
        "count through their parent's reaped-children time. Divided by the served requests "
        "of the level (all endpoints).",
        "",
        "### Latency per endpoint",
        "",
        *endpoint_table(report.levels),
        "",
        "### Credit pushes and sockets (browser profile)",
        "",
        *push_table(report.levels),
        "",
        "### CPU per served request, by process",
        "",
        *cpu_table(report.levels),
        "",
        others_line(report.levels),
        lag_line(report.levels),
        "",
        "### Raw-SQL ceiling, same run",
        "",
        "bench/credits.py's ceiling: consume_credit's ledger statements sent directly through "
        "psycopg, one transaction per operation, closed loop.",
        "",
        *ceiling_table(report.ceiling, unit="op", with_connections=True),
        "",
        "### Ledger audit after the run",
        "",
        ("Clean: " if report.audit_ok else "**NOT CLEAN**: ") + report.audit_summary,
        SECTION_END,
    ]
    return "\n".join(parts)


def fold_earlier_backlog(app: Flask) -> None:
    """Roll up the analytics events earlier runs left pending, before anything is measured:
    otherwise the worker's periodic roll-up folds that backlog during a level and its
    database time lands in the figures of this run."""
    from credit_app.platform.extensions import db
    from credit_app.services import analytics

    print("rolling up analytics events left by earlier runs …", flush=True)
    with app.app_context():
        while analytics.roll_up():
            db.session.commit()
        db.session.commit()


def run_audit(app: Flask) -> tuple[bool, str]:
    """audit_ledger() over the whole database: (clean, a one-paragraph summary)."""
    from credit_app.platform.extensions import db
    from credit_app.services.ledger_audit import audit_ledger

    with app.app_context():
        result = audit_ledger()
        db.session.remove()
    summary = (
        f"{result.users} users, {result.entries} ledger rows, {len(result.violations)} violations."
    )
    if result.violations:
        summary += " " + "; ".join(
            f"{violation.check} (user {violation.user_id}): {violation.detail}"
            for violation in result.violations[:20]
        )
    return result.ok, summary


# --- main --------------------------------------------------------------------------------


def parse_floats(text: str) -> list[float]:
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("expected positive numbers, e.g. 5,2.5")
    return values


def parse_counts(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if min(values, default=0) < 1:
        raise argparse.ArgumentTypeError("expected positive whole numbers, e.g. 1,50")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=("api", "browser", "both"), default="both")
    parser.add_argument("--users", type=int, help="users per profile (default 1000; quick 100)")
    parser.add_argument("--duration", type=float, help="seconds per level (default 60; quick 15)")
    parser.add_argument(
        "--think",
        type=parse_floats,
        default=[5.0, 2.5],
        help="api profile think times, mean seconds (default 5,2.5)",
    )
    parser.add_argument(
        "--browser-think",
        type=float,
        default=10.0,
        help="browser profile think time, mean seconds (default 10)",
    )
    parser.add_argument(
        "--generate-share",
        type=float,
        default=0.05,
        help="share of browser cycles that start a generation, when the "
        "user's previous one has settled (default 0.05)",
    )
    parser.add_argument(
        "--ramp", type=float, help="seconds over which users connect (default users / 50)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="at most this many seconds after the browser level for started "
        "generations to settle (default 30)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="timeout of each request, seconds (default 30)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="WEB_CONCURRENCY for gunicorn (default: as set, else "
        "gunicorn.conf.py's; any other gunicorn setting, such as the "
        "worker class, goes through GUNICORN_CMD_ARGS)",
    )
    parser.add_argument(
        "--threads", type=int, help="GUNICORN_THREADS (default: as set, else gunicorn.conf.py's)"
    )
    parser.add_argument(
        "--keepalive", type=int, help="gunicorn --keep-alive seconds (default: gunicorn.conf.py's)"
    )
    parser.add_argument(
        "--ceiling-clients",
        type=parse_counts,
        default=[1, 50],
        help="client counts of the raw-SQL ceiling (default 1,50)",
    )
    parser.add_argument(
        "--ceiling-duration",
        type=float,
        default=10.0,
        help="seconds per ceiling level (default 10)",
    )
    parser.add_argument(
        "--no-api-ceiling",
        dest="api_ceiling",
        action="store_false",
        help="skip the api profile against the HTTP ceiling (bench/lean_api.py)",
    )
    parser.add_argument("--seed", type=int, default=9, help="random seed of the think times")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 100 users, 15 s a level, 5 s ceiling levels",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="Markdown file whose load section to rewrite (default docs/performance.md)",
    )
    args = parser.parse_args(argv)
    args.users = args.users or (100 if args.quick else 1000)
    args.duration = args.duration or (15.0 if args.quick else 60.0)
    if args.quick:
        args.ceiling_duration = min(args.ceiling_duration, 5.0)
    args.ramp = args.ramp if args.ramp is not None else max(1.0, args.users / 50)
    if not 0 <= args.generate_share <= 1:
        parser.error("--generate-share must be between 0 and 1")
    return args


def loud(message: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n{message}\n{bar}\n", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clock = time.perf_counter()
    started = datetime.now(UTC)
    load_average = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    os.chdir(PROJECT_ROOT)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    files = raise_file_limit(args.users * FILE_LIMIT_PER_USER + 1024)

    from credit_app import create_app
    from credit_app.platform.config import instance_path

    print("migrating the database …", flush=True)
    migrate_database()
    app = create_app()
    conninfo = psycopg_conninfo(app)
    print(f"preparing {args.users} bench users …", flush=True)
    users = prepare_users(app, max(args.users, *args.ceiling_clients))
    fold_earlier_backlog(app)
    attribution = find_attribution(app, conninfo)
    port = free_port()
    env = server_environment(args, port)
    gunicorn = gunicorn_settings(env, gunicorn_command(args))
    report = Report(
        started=started,
        quick=args.quick,
        machine=describe_machine(app, conninfo),
        settings={
            "gunicorn": (
                f"{gunicorn['workers']} workers, {gunicorn['worker_class']}, "
                f"{gunicorn['threads']} threads, worker_connections "
                f"{gunicorn['worker_connections']}, keep-alive "
                f"{gunicorn['keepalive']} s"
            ),
            "rq worker": "1 (`python worker.py`), GENERATION_PROVIDER=local",
            "Load client": f"one asyncio process, aiohttp {aiohttp.__version__}",
            "Database pool per process": (
                f"{app.config['SQLALCHEMY_ENGINE_OPTIONS']['pool_size']} + "
                f"{app.config['SQLALCHEMY_ENGINE_OPTIONS']['max_overflow']} overflow"
            ),
            "Users": str(args.users),
            "Duration per level / ramp": f"{args.duration:g} s / {args.ramp:g} s",
            "api think times": ", ".join(f"{value:g} s" for value in args.think),
            "browser think time / generation share": (
                f"{args.browser_think:g} s / {args.generate_share:.0%}"
            ),
            "Request timeout": f"{args.request_timeout:g} s",
            "Open-file limit": str(files),
            "Load average at the start (1 / 5 / 15 min)": load_average,
            "Code": describe_code(),
        },
    )

    for clients in args.ceiling_clients:
        print(f"raw-SQL ceiling, {clients} client(s) …", flush=True)
        report.ceiling.append(
            measure_raw(conninfo, users, clients, args.ceiling_duration, 2, attribution)
        )

    print(f"starting gunicorn ({report.settings['gunicorn']}) and the rq worker …", flush=True)
    with app_processes(args, env, instance_path()) as server:
        meter = CpuMeter(Processes(attribution, server.gunicorn_pid, server.worker_pid))
        if args.profile in ("api", "both"):
            report.levels += asyncio.run(api_profile(args, server, users[: args.users], meter))
            if args.api_ceiling:
                print(
                    "the same api profile against the HTTP ceiling (bench/lean_api.py) …",
                    flush=True,
                )
                with ceiling_server(args, env, instance_path()) as ceiling:
                    ceiling_meter = CpuMeter(Processes(attribution, ceiling.gunicorn_pid))
                    report.levels += asyncio.run(
                        api_profile(
                            args, ceiling, users[: args.users], ceiling_meter, CEILING_PROFILE
                        )
                    )
        if args.profile in ("browser", "both"):
            browsers = [
                BrowserUser(user, cookie)
                for user, cookie in zip(
                    users[: args.users],
                    session_cookies(app, users[: args.users], server.host),
                    strict=True,
                )
            ]
            first_ledger_id = latest_ledger_id(conninfo)
            level = asyncio.run(browser_profile(args, server, browsers, meter))
            match_pushes(conninfo, browsers, first_ledger_id, level)
            report.levels.append(level)

    print("auditing the ledger …", flush=True)
    report.audit_ok, report.audit_summary = run_audit(app)
    report.runtime = time.perf_counter() - clock
    for title, lines in (
        ("latency per endpoint", endpoint_table(report.levels)),
        ("pushes and sockets", push_table(report.levels)),
        ("CPU ms per served request", cpu_table(report.levels)),
        ("raw-SQL ceiling", ceiling_table(report.ceiling, unit="op", with_connections=True)),
        ("targets", target_lines(report)),
    ):
        print(f"\n{title}\n" + "\n".join(lines))
    print(others_line(report.levels))
    print(lag_line(report.levels))
    write_section(args.output, render(report), SECTION_START, SECTION_END)
    print(f"\nwrote the load section of {args.output}")
    if not report.audit_ok:
        loud(f"THE LEDGER AUDIT IS NOT CLEAN after the load run: {report.audit_summary}")
        return 1
    print(f"ledger audit clean: {report.audit_summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
