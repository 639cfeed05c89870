"""gunicorn settings: bind to $PORT (Heroku-style) or 127.0.0.1:5000, sized by environment.

Worker model: gthread. Each open credit websocket holds one thread for its lifetime, so the
pool is sized for sockets (threads are started lazily, an idle one costs little memory);
ordinary pages run on the same pool and stay fast while it has free threads. gevent would
hold more sockets per process, but psycopg 3's C waiting loop does not yield to gevent, so a
slow query would stall every socket of the worker.
"""

import os

bind = os.environ.get("BIND", f"{'0.0.0.0' if 'PORT' in os.environ else '127.0.0.1'}:"
                              f"{os.environ.get('PORT', '5000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "600"))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") == "1" else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
