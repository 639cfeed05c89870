"""Command-line tools: users, the demo account, API documents, credit upkeep, services."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from credit_app.errors import DomainError
from credit_app.models import UserRole
from credit_app.platform.extensions import db

users_cli = AppGroup("users", help="Manage accounts.")
api_cli = AppGroup("api", help="API documentation.")
credits_cli = AppGroup("credits", help="Credit maintenance.")
services_cli = AppGroup("services", help="The embedded PostgreSQL and Redis.")
billing_cli = AppGroup("billing", help="Subscriptions and Creem webhook events.")

DEMO_EMAIL = "demo@example.com"


@contextmanager
def committed_or_refused() -> Iterator[None]:
    """Commit what the block changed; a DomainError from it rolls the change back and ends the
    command with its message. Raises click.ClickException."""
    try:
        yield
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    db.session.commit()


def echo_lines(lines: list[str], empty: str) -> None:
    """Print each line of a listing, or `empty` when there is none."""
    for line in lines:
        click.echo(line)
    if not lines:
        click.echo(empty)


@users_cli.command("create-admin")
@click.argument("email")
@click.password_option(help="The admin's password (prompted when omitted).")
def create_admin(email: str, password: str) -> None:
    """Create an admin account, or make an existing account an admin."""
    from credit_app.services import accounts

    existing = accounts.find_user_by_email(email)
    with committed_or_refused():
        if existing is not None:
            accounts.make_admin(existing)
            message = f"{existing.email} is now an admin."
        else:
            user = accounts.register_user(
                email,
                password,
                role=UserRole.ADMIN,
                min_password_length=current_app.config["MIN_PASSWORD_LENGTH"],
                verified=True,
            )
            message = f"Created admin {user.email}."
    click.echo(message)


@click.command("seed-demo")
def seed_demo() -> None:
    """Create the demo account (or give it a new password) and print how to sign in."""
    from credit_app.services import accounts

    password = "demo-" + secrets.token_urlsafe(9)
    user = accounts.find_user_by_email(DEMO_EMAIL)
    if user is None:
        user = accounts.register_user(DEMO_EMAIL, password, verified=True)
    else:
        accounts.set_password(user, password)
    db.session.commit()
    click.echo(
        f"Demo account: {DEMO_EMAIL}  password: {password}  "
        f"({user.credits_remaining}/{user.credits_total} credits)"
    )


@api_cli.command("openapi")
def print_openapi() -> None:
    """Print the OpenAPI 3.1 document."""
    from credit_app.web.openapi import build_openapi

    click.echo(json.dumps(build_openapi(current_app), indent=2, sort_keys=True))


@api_cli.command("postman")
def print_postman() -> None:
    """Print a Postman v2.1 collection generated from the OpenAPI document."""
    from credit_app.web.openapi import build_openapi, postman_collection

    click.echo(json.dumps(postman_collection(build_openapi(current_app)), indent=2, sort_keys=True))


@credits_cli.command("sweep")
def sweep() -> None:
    """Return the credit of every reservation past its timeout, now."""
    from credit_app.jobs.credits import sweep_expired_reservations

    click.echo(f"Expired {sweep_expired_reservations()} reservations.")


@services_cli.command("stop")
def stop_services() -> None:
    """Stop the embedded PostgreSQL and Redis (their data stays under instance/)."""
    from credit_app.platform import embedded
    from credit_app.platform.config import instance_path

    embedded.stop_all(instance_path())
    click.echo("Stopped the embedded servers.")


def acting_admin(email: str):
    """The admin account acting from the command line. Raises ClickException otherwise."""
    from credit_app.services import accounts

    actor = accounts.find_user_by_email(email)
    if actor is None or not actor.is_admin:
        raise click.ClickException(f"{email} is not an admin account.")
    return actor


@billing_cli.command("rerun-event")
@click.argument("event_id")
@click.option(
    "--actor",
    "actor_email",
    required=True,
    help="Email of the admin re-running it (written to the audit log).",
)
def rerun_event(event_id: str, actor_email: str) -> None:
    """Apply a stored Creem webhook event again, now (e.g. after its retries ran out)."""
    from credit_app.jobs.webhooks import process_webhook_event
    from credit_app.services import admin

    with committed_or_refused():
        admin.rerun_webhook_event(event_id, acting_admin(actor_email).id)
    try:
        outcome = process_webhook_event(event_id)
    except Exception as exc:
        raise click.ClickException(f"{event_id} failed again: {exc}") from None
    click.echo(f"{event_id}: {outcome}")


@billing_cli.command("flagged")
def list_flagged() -> None:
    """List subscriptions whose Pro was switched off by a refund or a dispute."""
    from credit_app.billing import subscriptions

    echo_lines(
        [
            f"{subscription.creem_subscription_id}  user {subscription.user_id}  "
            f"{subscription.staff_flag}  {subscription.flagged_at:%Y-%m-%d %H:%M}  "
            f"{subscription.status}"
            for subscription in subscriptions.flagged_subscriptions()
        ],
        "No flagged subscriptions.",
    )


@billing_cli.command("pack-shortfalls")
def list_pack_shortfalls() -> None:
    """List refunded credit packs whose credits were partly spent before the refund (the
    refund took back what was left; an admin decides about the rest)."""
    from credit_app.services import credits

    echo_lines(
        [
            f"{lot.creem_order_id}  user {lot.user_id}  {lot.granted} credits  "
            f"{lot.refund_shortfall} spent before the refund  "
            f"{lot.refunded_at:%Y-%m-%d %H:%M}"
            for lot in credits.refund_shortfalls()
        ],
        "No refunded packs with spent credits.",
    )


@billing_cli.command("clear-pack-shortfall")
@click.argument("order_id")
def clear_pack_shortfall(order_id: str) -> None:
    """Mark a refunded pack's shortfall as dealt with (it leaves the list)."""
    from credit_app.services import credits

    with committed_or_refused():
        lot = credits.clear_refund_shortfall(order_id)
    click.echo(f"Cleared the shortfall of order {order_id} (user {lot.user_id}).")


@billing_cli.command("foreign")
def list_foreign() -> None:
    """List subscriptions to products that are not a Pro plan (stored, they give no Pro)."""
    from credit_app.billing import subscriptions

    echo_lines(
        [
            f"{subscription.creem_subscription_id}  user {subscription.user_id}  "
            f"product {subscription.product_id}  {subscription.status}"
            for subscription in subscriptions.foreign_subscriptions()
        ],
        "No subscriptions to other products.",
    )


@billing_cli.command("clear-flag")
@click.argument("subscription_id")
def clear_flag(subscription_id: str) -> None:
    """Clear a refund or dispute flag: the subscription's own status decides Pro again."""
    from credit_app.billing import subscriptions
    from credit_app.services import credits

    with committed_or_refused():
        subscription = subscriptions.clear_flag(subscription_id)
    plan = credits.get_user_credits(subscription.user_id).subscription_status
    click.echo(
        f"Cleared the flag on {subscription_id}; user {subscription.user_id} is on the {plan} plan."
    )


def register_cli(app: Flask) -> None:
    from credit_app.cli.maintenance import analytics_cli, audit_ledger_command, seed_cli
    from credit_app.cli.media import media_cli

    credits_cli.add_command(audit_ledger_command)
    for command in (analytics_cli, seed_cli, media_cli):
        app.cli.add_command(command)
    for command in (users_cli, api_cli, credits_cli, services_cli, billing_cli, seed_demo):
        app.cli.add_command(command)
