"""gunicorn settings: bind to $PORT (Heroku-style) or 127.0.0.1:5000, sized by environment."""

import os

bind = os.environ.get("BIND", f"{'0.0.0.0' if 'PORT' in os.environ else '127.0.0.1'}:"
                              f"{os.environ.get('PORT', '5000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") == "1" else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
