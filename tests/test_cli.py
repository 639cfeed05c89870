import json

from credit_app.models import UserRole
from credit_app.services import accounts, credits
from tests.conftest import PASSWORD


def test_create_admin_makes_a_new_admin_with_welcome_credits(app):
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", "Boss@Example.com", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    boss = accounts.find_user_by_email("boss@example.com")
    assert boss.role == UserRole.ADMIN and boss.credits_remaining == 6


def test_create_admin_promotes_an_existing_user(app, user):
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", user.email, "--password", "ignored-password-1"]
    )
    assert result.exit_code == 0 and "is now an admin" in result.output
    assert user.is_admin


def test_create_admin_rejects_a_weak_password(app):
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", "weak@example.com", "--password", "short"]
    )
    assert result.exit_code != 0 and "at least 10 characters" in result.output
    assert accounts.find_user_by_email("weak@example.com") is None


def test_seed_demo_prints_a_working_password_each_run(app):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["seed-demo"])
        assert result.exit_code == 0
        password = result.output.split("password: ")[1].split()[0]
        assert accounts.authenticate("demo@example.com", password) is not None


def test_api_commands_print_json(app):
    runner = app.test_cli_runner()
    spec = json.loads(runner.invoke(args=["api", "openapi"]).output)
    assert spec["openapi"] == "3.1.0"
    collection = json.loads(runner.invoke(args=["api", "postman"]).output)
    assert collection["info"]["name"] == "credit_app API"


def test_sweep_command(app, user):
    from datetime import timedelta

    credits.reserve_credit(user.id, "video", "old", timeout=timedelta(seconds=-5))
    result = app.test_cli_runner().invoke(args=["credits", "sweep"])
    assert "Expired 1 reservations." in result.output
    assert credits.get_user_credits(user.id).remaining == 6
