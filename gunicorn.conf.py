"""gunicorn settings: bind to $PORT (Heroku-style) or 127.0.0.1:5000, sized by environment.

Worker model: gevent (`GUNICORN_WORKER_CLASS`, default `gevent`), one worker per core
(`WEB_CONCURRENCY`, default 2). Every request and every open credit websocket is a greenlet,
so one process holds thousands of sockets at a few KiB each while the same process serves
pages and the API; nothing waits for a free thread, and there are no hundreds of OS threads
contending for the GIL (or counting against a dyno's thread limit). psycopg 3 (3.1.14 and
later) notices gevent's monkey-patching and waits for PostgreSQL cooperatively, so a slow
query yields to the other greenlets instead of freezing the worker. `gthread` stays available
(`GUNICORN_WORKER_CLASS=gthread`, `GUNICORN_THREADS`) for debugging without gevent.

Limits, and why:
- `GUNICORN_WORKER_CONNECTIONS` (2,500): open connections per worker; 1,000 users each with
  a socket and a keep-alive page connection over two workers need about 1,000 per worker.
- `GUNICORN_TIMEOUT` (30 s): a worker stuck longer than this is restarted.
- `keepalive` (20 s): how long an idle keep-alive connection is kept for its next request;
  longer than a user's think time, so a browser or API client rarely reconnects.
- Garbage collection: each worker freezes what it holds after loading the app
  (`gc.freeze()` in `post_worker_init`), so a full collection walks only what requests made
  since. Without it a full collection walked the app's ~160,000 objects for 67-103 ms,
  during which a gevent worker serves nobody (measured 2026-12-07 under the 1,000-user api
  load at T = 5 s: consume p99 102 ms and GET p99 51 ms without, 37 and 15 ms with; full
  collections then took 2-10 ms).
- The database pool (`DATABASE_POOL_SIZE` + `DATABASE_MAX_OVERFLOW` per worker) bounds the
  queries in flight; a request that cannot get a connection within
  `DATABASE_POOL_TIMEOUT_SECONDS` gets 503 + Retry-After. At start-up the master compares
  workers x pool with PostgreSQL's `max_connections` and logs what to change.
"""

import gc
import os

bind = os.environ.get(
    "BIND", f"{'0.0.0.0' if 'PORT' in os.environ else '127.0.0.1'}:{os.environ.get('PORT', '5000')}"
)
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
threads = int(os.environ.get("GUNICORN_THREADS", "1" if worker_class == "gevent" else "32"))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "2500"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 20
backlog = 2048
# The app logs one line per request itself (with the request id and duration); gunicorn's own
# access log would be a second line for the same request.
accesslog = "-" if os.environ.get("ACCESS_LOG", "0") == "1" else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker) -> None:
    """Freeze the loaded app out of the garbage collector's reach (see the notes above: its
    modules, routes, engine and templates live as long as the worker), then say once, from
    the first worker, whether workers x pool fit PostgreSQL's max_connections (for the app:
    bench/lean_api.py has no SQLAlchemy pool). In the worker and not the master: the master
    must not import the app (and with it psycopg) before gevent has patched the worker, or
    psycopg would keep its blocking wait."""
    gc.freeze()
    if worker.age == 1 and "sqlalchemy" in getattr(worker.wsgi, "extensions", {}):
        from credit_app.platform.capacity import report_connection_budget

        report_connection_budget(workers, worker.log, app=worker.wsgi)
