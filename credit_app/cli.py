"""Command-line tools: users, the demo account, API documents, credit upkeep, services."""

from __future__ import annotations

import json
import secrets

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from credit_app.errors import DomainError
from credit_app.extensions import db
from credit_app.models import UserRole

users_cli = AppGroup("users", help="Manage accounts.")
api_cli = AppGroup("api", help="API documentation.")
credits_cli = AppGroup("credits", help="Credit maintenance.")
services_cli = AppGroup("services", help="The embedded PostgreSQL and Redis.")

DEMO_EMAIL = "demo@example.com"


@users_cli.command("create-admin")
@click.argument("email")
@click.password_option(help="The admin's password (prompted when omitted).")
def create_admin(email: str, password: str) -> None:
    """Create an admin account, or make an existing account an admin."""
    from credit_app.services import accounts

    existing = accounts.find_user_by_email(email)
    try:
        if existing is not None:
            accounts.make_admin(existing)
            message = f"{existing.email} is now an admin."
        else:
            user = accounts.register_user(
                email, password, role=UserRole.ADMIN,
                min_password_length=current_app.config["MIN_PASSWORD_LENGTH"],
            )
            message = f"Created admin {user.email}."
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    db.session.commit()
    click.echo(message)


@click.command("seed-demo")
def seed_demo() -> None:
    """Create the demo account (or give it a new password) and print how to sign in."""
    from credit_app.services import accounts

    password = "demo-" + secrets.token_urlsafe(9)
    user = accounts.find_user_by_email(DEMO_EMAIL)
    if user is None:
        user = accounts.register_user(DEMO_EMAIL, password)
    else:
        accounts.set_password(user, password)
    db.session.commit()
    click.echo(f"Demo account: {DEMO_EMAIL}  password: {password}  "
               f"({user.credits_remaining}/{user.credits_total} credits)")


@api_cli.command("openapi")
def print_openapi() -> None:
    """Print the OpenAPI 3.1 document."""
    from credit_app.openapi import build_openapi

    click.echo(json.dumps(build_openapi(current_app), indent=2, sort_keys=True))


@api_cli.command("postman")
def print_postman() -> None:
    """Print a Postman v2.1 collection generated from the OpenAPI document."""
    from credit_app.openapi import build_openapi, postman_collection

    click.echo(json.dumps(postman_collection(build_openapi(current_app)), indent=2,
                          sort_keys=True))


@credits_cli.command("sweep")
def sweep() -> None:
    """Return the credit of every reservation past its timeout, now."""
    from credit_app.jobs.credits import sweep_expired_reservations

    click.echo(f"Expired {sweep_expired_reservations()} reservations.")


@services_cli.command("stop")
def stop_services() -> None:
    """Stop the embedded PostgreSQL and Redis (their data stays under instance/)."""
    from credit_app import embedded
    from credit_app.config import instance_path

    embedded.stop_all(instance_path())
    click.echo("Stopped the embedded servers.")


def register_cli(app: Flask) -> None:
    for command in (users_cli, api_cli, credits_cli, services_cli, seed_demo):
        app.cli.add_command(command)
