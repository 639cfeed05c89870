"""The WSGI entry point: `gunicorn app:app`, `flask --app app ...`."""

from credit_app import create_app

app = create_app()
