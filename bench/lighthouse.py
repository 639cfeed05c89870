"""Lighthouse on the pages a buyer judges us by, mobile and desktop; figures into
docs/performance.md (its <!-- lighthouse:start --> ... <!-- lighthouse:end --> section).

    python -m bench.lighthouse            # all four pages, mobile and desktop
    python -m bench.lighthouse --runs 3   # the median of three runs per page and form factor

What it measures: the landing page signed out, and, as a user with 7 finished designs, the
dashboard, a feature page (Redecorate a room) and the subscription page. The app runs as in
production (gunicorn app:app with gunicorn.conf.py, `python worker.py`) on the embedded
PostgreSQL and Redis; the 7 designs are made through the real upload form and the real
generation job (local provider), so their thumbnails are the ones users get.

Lighthouse comes from npm (bench/lighthouse/package.json: `npm ci --prefix bench/lighthouse`)
and drives the system Chromium (CHROME_PATH, default /usr/bin/chromium); it never downloads a
browser. Not part of `make test`: the scores depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from flask import Flask

from bench.credits import free_port, migrate_database
from bench.load import app_processes, server_environment, signed_in_session
from bench.report import write_section
from credit_app.generation.landing_examples import SAMPLES_DIR

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE_DIR = PROJECT_ROOT / "bench" / "lighthouse"
LIGHTHOUSE_BIN = LIGHTHOUSE_DIR / "node_modules" / ".bin" / "lighthouse"
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "performance.md"
SECTION_START, SECTION_END = "<!-- lighthouse:start -->", "<!-- lighthouse:end -->"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
FORM_FACTORS = ("mobile", "desktop")
EMAIL = "lighthouse@bench.example.com"
DESIGNS = 7
# One user agent for Lighthouse and for minting the session (sessions are "strong": bound
# to the user agent and address).
USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 credit_app-lighthouse"
)
TARGET_SCORE = 95
# Chromium under load now and then loses the trace (NO_NAVSTART): such a run is repeated.
ATTEMPTS = 3
TARGET_DASHBOARD_BYTES = 600 * 1024
DESIGN_FORMS = (
    ("redecorate-room", "living-room.jpg", {"room_type": "living_room", "style": "japandi"}),
    ("furnish-empty-space", "empty-room.jpg", {"room_type": "bedroom", "style": "coastal"}),
    ("redesign-exterior", "house.jpg", {"style": "farmhouse"}),
    ("sketch-to-reality", "sketch.png", {"room_type": "kitchen", "style": "modern"}),
    ("redecorate-room", "living-room.jpg", {"room_type": "living_room", "style": "industrial"}),
    (
        "remove-object",
        "living-room.jpg",
        {"mask_x": "8", "mask_y": "55", "mask_w": "50", "mask_h": "30"},
    ),
    ("redesign-exterior", "house.jpg", {"style": "tropical"}),
)


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    signed_in: bool


PAGES = (
    Page("Landing", "/", False),
    Page("Dashboard (7 designs)", "/dashboard", True),
    Page("Feature: Redecorate a room", "/dashboard/redecorate-room", True),
    Page("Subscription", "/dashboard/subscription", True),
)


@dataclass
class Result:
    page: Page
    form_factor: str
    scores: dict[str, int]
    lcp_ms: float
    cls: float
    tbt_ms: float
    transfer_bytes: int
    failing: list[str]
    benchmark_index: float


def prepare_user(app: Flask) -> int:
    """The bench user (verified), with credits enough for its designs; returns its id."""
    from credit_app.platform.extensions import db
    from credit_app.services import accounts, credits

    with app.app_context():
        user = accounts.find_user_by_email(EMAIL)
        if user is None:
            user = accounts.register_user(EMAIL, uuid.uuid4().hex, verified=True)
        if user.credits_remaining < DESIGNS:
            credits.grant_credits(user.id, DESIGNS, "Lighthouse benchmark designs")
        db.session.commit()
        user_id = user.id
        db.session.remove()
    return user_id


def succeeded_designs(app: Flask, user_id: int) -> int:
    from sqlalchemy import func, select

    from credit_app.models import Generation
    from credit_app.platform.extensions import db

    with app.app_context():
        count = db.session.execute(
            select(func.count())
            .select_from(Generation)
            .where(Generation.user_id == user_id, Generation.status == "succeeded")
        ).scalar_one()
        db.session.remove()
    return count


def make_designs(app: Flask, user_id: int, base_url: str, cookie: str, token: str) -> None:
    """Bring the user to DESIGNS finished designs through the upload form and the worker.

    Raises RuntimeError when a form is refused or the worker does not finish them in time.
    """
    have = succeeded_designs(app, user_id)
    headers = {
        "Cookie": cookie,
        "X-CSRFToken": token,
        "User-Agent": USER_AGENT,
        "HX-Request": "true",
    }
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for slug, sample, fields in DESIGN_FORMS[: max(0, DESIGNS - have)]:
            data = {**fields, "generation_id": uuid.uuid4().hex, "prompt": ""}
            files = {"image": (sample, (SAMPLES_DIR / sample).read_bytes())}
            response = client.post(f"/dashboard/{slug}", data=data, files=files)
            if response.status_code != 200:
                raise RuntimeError(f"{slug}: {response.status_code} {response.text[:300]}")
    deadline = time.monotonic() + 180
    while succeeded_designs(app, user_id) < DESIGNS:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish the designs within 180 s")
        time.sleep(1)


def run_lighthouse(url: str, form_factor: str, cookie: str | None, workdir: Path) -> dict:
    """One Lighthouse run; returns its JSON report. Raises RuntimeError when it fails."""
    report = workdir / f"report-{uuid.uuid4().hex}.json"
    command = [
        str(LIGHTHOUSE_BIN),
        url,
        "--output=json",
        f"--output-path={report}",
        "--quiet",
        f"--only-categories={','.join(CATEGORIES)}",
        f"--emulatedUserAgent={USER_AGENT}",
        "--chrome-flags=--headless=new --no-sandbox --disable-gpu "
        "--disable-dev-shm-usage --disable-background-networking",
    ]
    if form_factor == "desktop":
        command.append("--preset=desktop")
    if cookie:
        headers = workdir / "headers.json"
        headers.write_text(json.dumps({"Cookie": cookie}))
        command.append(f"--extra-headers={headers}")
    env = {**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", "/usr/bin/chromium")}
    for _attempt in range(ATTEMPTS):
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if finished.returncode == 0 and report.exists():
            return json.loads(report.read_text())
    raise RuntimeError(f"lighthouse failed on {url} {ATTEMPTS} times: {finished.stderr[-2000:]}")


def summarise(page: Page, form_factor: str, reports: list[dict]) -> Result:
    """The median run (by performance score) of `reports`."""
    reports = sorted(reports, key=lambda r: r["categories"]["performance"]["score"] or 0)
    report = reports[len(reports) // 2]
    audits = report["audits"]
    scores = {name: round((report["categories"][name]["score"] or 0) * 100) for name in CATEGORIES}
    failing = sorted(
        audit_id
        for category in CATEGORIES
        for ref in report["categories"][category]["auditRefs"]
        if ref["weight"] > 0
        for audit_id in [ref["id"]]
        if audits[audit_id].get("score") is not None and audits[audit_id]["score"] < 0.9
    )
    return Result(
        page,
        form_factor,
        scores,
        lcp_ms=audits["largest-contentful-paint"]["numericValue"],
        cls=audits["cumulative-layout-shift"]["numericValue"],
        tbt_ms=audits["total-blocking-time"]["numericValue"],
        transfer_bytes=int(audits["total-byte-weight"]["numericValue"]),
        failing=failing,
        benchmark_index=report["environment"].get("benchmarkIndex") or 0.0,
    )


def section(
    results: list[Result], runs: int, started: datetime, version: str, load_average: str
) -> str:
    lowest = min(min(result.scores.values()) for result in results)
    dashboard = [r for r in results if r.page.path == "/dashboard"]
    heaviest = max((r.transfer_bytes for r in dashboard), default=0)
    lines = [
        SECTION_START,
        "## Lighthouse (generated by `python -m bench.lighthouse`)",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, Lighthouse {version}, Debian Chromium "
        f"(headless), {'median of ' + str(runs) + ' runs' if runs > 1 else 'one run'} per "
        "page and form factor; gunicorn app:app (gunicorn.conf.py) and the rq worker on the "
        "embedded PostgreSQL and Redis, on this 2-core machine shared with other work. "
        "Mobile is Lighthouse's default (simulated Moto G Power, slow 4G); desktop is "
        "`--preset=desktop`. Signed-in pages are those of a user with 7 finished designs "
        "made through the upload form and the generation job.",
        "",
        "| Page | Form factor | Performance | Accessibility | Best practices | SEO | LCP | "
        "TBT | CLS | Transferred | CPU index |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s = r.scores
        lines.append(
            f"| {r.page.name} | {r.form_factor} | {s['performance']} | {s['accessibility']} "
            f"| {s['best-practices']} | {s['seo']} | {r.lcp_ms / 1000:.2f} s | "
            f"{r.tbt_ms:.0f} ms | {r.cls:.3f} | {r.transfer_bytes / 1024:.0f} KB | "
            f"{r.benchmark_index:.0f} |"
        )
    lines += [
        "",
        f"Target: every score ≥ {TARGET_SCORE}: "
        f"{'met' if lowest >= TARGET_SCORE else 'missed'} (lowest {lowest}). "
        f"Dashboard with 7 designs ≤ 600 KB transferred: "
        f"{'met' if heaviest <= TARGET_DASHBOARD_BYTES else 'missed'} "
        f"({heaviest / 1024:.0f} KB at most).",
    ]
    lines += [
        "",
        "CPU index is Lighthouse's benchmarkIndex of the machine during that run (a quiet "
        "desktop scores about 1,000-2,000). Mobile runs apply Lighthouse's fixed 4x CPU "
        "slowdown on top, so on a loaded machine total blocking time (TBT) grows with the "
        f"load (load average {load_average} when this run started), not with our code.",
    ]
    misses = [
        f"{r.page.name} ({r.form_factor}): {', '.join(r.failing)}" for r in results if r.failing
    ]
    if misses:
        lines += ["", "Audits scoring under 0.9:", ""] + [f"- {miss}" for miss in misses]
    lines.append(SECTION_END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs per page and form factor")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pages", default="", help="only pages whose name contains this")
    parser.add_argument("--form-factors", default=",".join(FORM_FACTORS))
    parser.add_argument(
        "--reports", type=Path, default=None, help="keep each Lighthouse JSON report in this folder"
    )
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    args = parser.parse_args(argv)
    args.keepalive = None
    if not LIGHTHOUSE_BIN.exists():
        print("Lighthouse is not installed: npm ci --prefix bench/lighthouse", file=sys.stderr)
        return 2
    version = json.loads(
        (LIGHTHOUSE_DIR / "node_modules" / "lighthouse" / "package.json").read_text()
    )["version"]
    started = datetime.now(UTC)
    load_average = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    os.chdir(PROJECT_ROOT)
    from credit_app import create_app
    from credit_app.platform.config import instance_path

    migrate_database()
    app = create_app()
    user_id = prepare_user(app)
    port = free_port()
    env = server_environment(args, port)
    results = []
    with (
        app_processes(args, env, instance_path()) as server,
        tempfile.TemporaryDirectory(prefix="lighthouse-") as workdir,
    ):
        cookie, token = signed_in_session(app, user_id, server.host, USER_AGENT)
        print("making the designs …", flush=True)
        make_designs(app, user_id, server.base_url, cookie, token)
        httpx.get(server.base_url + "/", timeout=120)  # the landing examples, made once
        for page in [page for page in PAGES if args.pages.lower() in page.name.lower()]:
            for form_factor in args.form_factors.split(","):
                reports = [
                    run_lighthouse(
                        server.base_url + page.path,
                        form_factor,
                        cookie if page.signed_in else None,
                        Path(workdir),
                    )
                    for _ in range(args.runs)
                ]
                if args.reports:
                    args.reports.mkdir(parents=True, exist_ok=True)
                    for number, report in enumerate(reports):
                        slug = "".join(c if c.isalnum() else "-" for c in page.name.lower())
                        (args.reports / f"{slug}-{form_factor}-{number}.json").write_text(
                            json.dumps(report)
                        )
                result = summarise(page, form_factor, reports)
                results.append(result)
                print(
                    f"{page.name:30} {form_factor:8} {result.scores} "
                    f"LCP {result.lcp_ms:.0f} ms, {result.transfer_bytes / 1024:.0f} KB"
                    f"{'; under 0.9: ' + ', '.join(result.failing) if result.failing else ''}",
                    flush=True,
                )
    if not args.no_write:
        write_section(
            args.output,
            section(results, args.runs, started, version, load_average),
            SECTION_START,
            SECTION_END,
        )
        print(f"wrote {args.output}")
    return (
        0 if statistics.fmean([min(r.scores.values()) >= TARGET_SCORE for r in results]) == 1 else 1
    )


if __name__ == "__main__":
    sys.exit(main())
