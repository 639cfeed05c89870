"""Helpers for tests and the offline demo: stand-ins for the services the app talks to."""
