"""Live-update benchmark: 1,000 open credit sockets across 200 users on one host.

Credit changes are committed at a steady rate; every socket of the changed user must
receive the new counter. Measured: the delay from commit to receipt (p50/p95/p99), the web
processes' memory with the sockets open, and page latency meanwhile. Writes its own section
of docs/performance.md (between the live markers) and leaves the rest of the file alone.

    python -m bench.live [--users 200] [--sockets-per-user 5] [--rate 20] [--seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import simple_websocket

from bench.credits import free_port, migrate_database, wait_until_up

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPORT = PROJECT_ROOT / "docs" / "performance.md"
START, END = "<!-- live:start -->", "<!-- live:end -->"
EMAIL = "live-bench-{n}@example.com"
PASSWORD = "live-bench-password-1"
BROWSER = "Mozilla/5.0 (credit_app live benchmark)"
REMAINING = re.compile(r'data-remaining="(\d+)"')


@dataclass
class Probe:
    """What the sockets saw: for each (user, balance) the commit time and receipt times."""

    committed: dict[tuple[int, int], float] = field(default_factory=dict)
    delays_ms: list[float] = field(default_factory=list)
    missing: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, user_id: int, remaining: int, at: float) -> None:
        with self.lock:
            committed = self.committed.get((user_id, remaining))
            if committed is not None:
                self.delays_ms.append((at - committed) * 1000)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@contextlib.contextmanager
def web_server(workers: int, threads: int, log_path: Path) -> Iterator[tuple[str, int]]:
    """gunicorn serving the real app; yields (host:port, master pid); always stopped."""
    import subprocess

    port = free_port()
    env = {**os.environ, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers),
           "GUNICORN_THREADS": str(threads), "ACCESS_LOG": "0",
           "RATELIMIT_AUTH": "1000000 per minute", "RATELIMIT_API": "1000000 per minute"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app", "--config", "gunicorn.conf.py"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(process, f"http://127.0.0.1:{port}", log_path)
            yield f"127.0.0.1:{port}", process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def prepare_users(count: int) -> list[int]:
    from credit_app import create_app
    from credit_app.extensions import db
    from credit_app.services import accounts

    app = create_app()
    ids = []
    with app.app_context():
        for n in range(count):
            user = accounts.find_user_by_email(EMAIL.format(n=n))
            if user is None:
                user = accounts.register_user(EMAIL.format(n=n), PASSWORD)
            ids.append(user.id)
        db.session.commit()
    return ids


def sign_in(host: str, n: int) -> str:
    """A session cookie for bench user `n`. Raises RuntimeError if the sign-in fails."""
    with httpx.Client(base_url=f"http://{host}", headers={"User-Agent": BROWSER}) as client:
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").text)
        response = client.post("/login", data={"email": EMAIL.format(n=n), "password": PASSWORD,
                                                "csrf_token": token.group(1) if token else ""})
        if response.status_code != 302:
            raise RuntimeError(f"sign-in of bench user {n} failed: {response.status_code}")
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def reader(ws, user_id: int, probe: Probe, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            message = ws.receive(timeout=0.5)
        except simple_websocket.ConnectionClosed:
            return
        if message:
            match = REMAINING.search(message)
            if match:
                probe.received(user_id, int(match.group(1)), time.perf_counter())


def rss_mb(master_pid: int) -> float:
    master = psutil.Process(master_pid)
    return sum(proc.memory_info().rss for proc in [master, *master.children()]) / 2**20


def page_latency(host: str, cookie: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=f"http://{host}",
                      headers={"Cookie": cookie, "User-Agent": BROWSER}) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.get("/dashboard")
            if response.status_code == 200:
                out.append((time.perf_counter() - started) * 1000)
            stop.wait(0.1)


def run(args: argparse.Namespace) -> dict:
    from credit_app import create_app
    from credit_app.extensions import db
    from credit_app.services import credits

    migrate_database()
    user_ids = prepare_users(args.users)
    app = create_app()
    probe, stop = Probe(), threading.Event()
    log_path = PROJECT_ROOT / "instance" / "bench-live-gunicorn.log"
    with web_server(args.workers, args.threads, log_path) as (host, master_pid):
        idle_rss = rss_mb(master_pid)
        cookies = [sign_in(host, n) for n in range(args.users)]
        sockets, readers = [], []
        opened = time.perf_counter()
        for index in range(args.users * args.sockets_per_user):
            n = index % args.users
            ws = simple_websocket.Client.connect(
                f"ws://{host}/ws/credits",
                headers={"Cookie": cookies[n], "Origin": f"http://{host}", "User-Agent": BROWSER})
            ws.receive(timeout=10)
            sockets.append(ws)
            thread = threading.Thread(target=reader, args=(ws, user_ids[n], probe, stop),
                                      daemon=True)
            thread.start()
            readers.append(thread)
        open_seconds = time.perf_counter() - opened
        time.sleep(2)
        open_rss = rss_mb(master_pid)
        pages: list[float] = []
        pager = threading.Thread(target=page_latency, args=(host, cookies[0], stop, pages),
                                 daemon=True)
        pager.start()
        interval, changes = 1 / args.rate, 0
        deadline = time.perf_counter() + args.seconds
        with app.app_context():
            while time.perf_counter() < deadline:
                user_id = random.choice(user_ids)
                entry = credits.grant_credits(user_id, 1, "live benchmark")
                probe.committed[(user_id, entry.balance_after)] = time.perf_counter()
                db.session.commit()
                probe.committed[(user_id, entry.balance_after)] = time.perf_counter()
                changes += 1
                time.sleep(max(0.0, interval - 0.001))
        time.sleep(2)
        stop.set()
        expected = changes * args.sockets_per_user
        for ws in sockets:
            ws.close()
    return {
        "sockets": len(sockets), "users": args.users, "changes": changes,
        "rate": args.rate, "seconds": args.seconds, "expected": expected,
        "received": len(probe.delays_ms), "open_seconds": open_seconds,
        "idle_rss": idle_rss, "open_rss": open_rss, "delays": probe.delays_ms, "pages": pages,
        "workers": args.workers, "threads": args.threads,
    }


def render(result: dict) -> str:
    delays, pages = result["delays"], result["pages"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        "## Live updates: 1,000 sockets on one host",
        "",
        f"Generated by `bench/live.py` on {now}; rerun it rather than editing these figures.",
        f"gunicorn {result['workers']} gthread workers x {result['threads']} threads, the "
        f"embedded PostgreSQL and Redis on this 2-core machine, benchmark clients on the same "
        f"machine. {result['sockets']} sockets for {result['users']} users "
        f"({result['sockets'] // result['users']} tabs each) were opened in "
        f"{result['open_seconds']:.1f} s; then one credit grant was committed about "
        f"{result['rate']} times a second for {result['seconds']} s to a random user, and "
        "every socket of that user had to receive the new counter.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| changes committed | {result['changes']} |",
        f"| counter pushes expected / received | {result['expected']} / {result['received']} |",
    ]
    if delays:
        lines += [
            f"| commit to receipt p50 | {percentile(delays, 50):.1f} ms |",
            f"| commit to receipt p95 | {percentile(delays, 95):.1f} ms |",
            f"| commit to receipt p99 | {percentile(delays, 99):.1f} ms |",
            f"| commit to receipt max | {max(delays):.1f} ms |",
        ]
    lines += [
        f"| web processes' memory, idle | {result['idle_rss']:.0f} MiB |",
        f"| web processes' memory, sockets open | {result['open_rss']:.0f} MiB "
        f"(+{(result['open_rss'] - result['idle_rss']) * 1024 / result['sockets']:.0f} KiB "
        "a socket) |",
    ]
    if pages:
        lines += [
            f"| GET /dashboard meanwhile, p50 / p95 ({len(pages)} requests) | "
            f"{statistics.median(pages):.1f} / {percentile(pages, 95):.1f} ms |",
        ]
    target = "meets" if delays and percentile(delays, 95) < 100 else "misses"
    lines += ["", f"The spec's target for real-time updates is under 100 ms: the p95 {target} it.",
              END]
    return "\n".join(lines)


def write_section(section: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else "# Performance\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    REPORT.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--sockets-per-user", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=600)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = run(args)
    section = render(result)
    write_section(section)
    print(section)


if __name__ == "__main__":
    main()
