from collections import Counter

import pytest
from flask import g
from sqlalchemy import select

from credit_app.errors import ValidationFailed
from credit_app.models import AnalyticsEvent, FeatureFlag
from credit_app.platform.extensions import db
from credit_app.services import audit, credits, rollout


def inside_and_outside(make_user, percentage: int):
    """Make users until there is one inside and one outside a rollout of `percentage`."""
    inside = outside = None
    while inside is None or outside is None:
        user = make_user()
        if rollout.bucket(user.id) < percentage:
            inside = inside or user
        else:
            outside = outside or user
    return inside, outside


def test_buckets_are_stable_spread_and_per_flag():
    assert [rollout.bucket(user_id) for user_id in range(1, 6)] == [
        rollout.bucket(user_id) for user_id in range(1, 6)
    ]
    counts = Counter(rollout.bucket(user_id) < 10 for user_id in range(1, 20_001))
    assert 1_800 < counts[True] < 2_200
    assert all(0 <= rollout.bucket(user_id) < 100 for user_id in range(1, 1_000))
    differs = sum(rollout.bucket(n) != rollout.bucket(n, "another_flag") for n in range(1, 200))
    assert differs > 150


def test_raising_the_percentage_only_adds_users():
    for user_id in range(1, 2_000):
        bucket = rollout.bucket(user_id)
        enforced_at = [bucket < percentage for percentage in rollout.ROLLOUT_STEPS]
        assert enforced_at == sorted(enforced_at)


def test_everyone_is_enforced_until_an_admin_changes_it(user):
    assert rollout.percentage() == 100
    assert rollout.is_enforced(user.id)


def test_outside_the_rollout_uses_cost_nothing_and_are_recorded(make_user, admin):
    rollout.set_percentage(10, admin.id, "10 % step")
    inside, outside = inside_and_outside(make_user, 10)
    for _ in range(8):
        credits.consume_credit(outside.id, "interior")
    assert credits.get_user_credits(outside.id).remaining == 6
    assert credits.validate_credit_usage(outside.id, "video").allowed
    history = credits.get_credit_history(outside.id).items
    assert len(history) == 9
    assert all(
        entry.metadata_ == {"plan": "free", "enforcement": "off"}
        for entry in history
        if entry.kind == "consume"
    )
    reservation = credits.reserve_credit(outside.id, "video", "outside-hold")
    assert reservation.amount == 0
    assert (
        credits.get_credit_history(outside.id, limit=1).items[0].metadata_["enforcement"] == "off"
    )
    credits.consume_credit(inside.id, "interior")
    assert credits.get_user_credits(inside.id).remaining == 5
    assert "enforcement" not in credits.get_credit_history(inside.id, limit=1).items[0].metadata_
    uses = (
        db.session.execute(
            select(AnalyticsEvent).where(
                AnalyticsEvent.user_id == outside.id, AnalyticsEvent.event_type == "credit_consumed"
            )
        )
        .scalars()
        .all()
    )
    assert len(uses) == 8 and all(
        event.credits == 0 and event.properties["enforced"] is False for event in uses
    )


def test_at_zero_percent_nobody_is_blocked(user, admin):
    rollout.set_percentage(0, admin.id, "switch off")
    for _ in range(10):
        credits.consume_credit(user.id, "video")
    assert credits.get_user_credits(user.id).remaining == 6


def test_pro_users_cost_nothing_either_way(make_user, admin):
    pro = make_user(plan="pro")
    rollout.set_percentage(0, admin.id, "off")
    credits.consume_credit(pro.id, "video")
    assert "enforcement" not in credits.get_credit_history(pro.id, limit=1).items[0].metadata_


def test_a_change_is_audited_and_takes_effect_at_once(user, admin):
    assert rollout.percentage() == 100
    change = rollout.set_percentage(25, admin.id, "  next step  ")
    assert (change.previous, change.percentage) == (100, 25)
    assert rollout.percentage() == 25
    rollout.set_percentage(50, admin.id, "again")
    assert db.session.get(FeatureFlag, rollout.ENFORCEMENT_FLAG).updated_by_id == admin.id
    entries = audit.list_entries(action="rollout.change").items
    assert [entry.details for entry in entries] == [
        {"from": 25, "to": 50, "reason": "again"},
        {"from": 100, "to": 25, "reason": "next step"},
    ]


@pytest.mark.parametrize("value", [-1, 101, 10.5, "10", True, None])
def test_bad_percentages_are_refused(admin, value):
    with pytest.raises(ValidationFailed):
        rollout.set_percentage(value, admin.id, "reason")
    assert rollout.percentage() == 100


def test_a_reason_is_required(admin):
    with pytest.raises(ValidationFailed):
        rollout.set_percentage(10, admin.id, " ")
    assert audit.list_entries().items == []


@pytest.fixture
def flag_reads(monkeypatch) -> list[dict]:
    """Every read of the stored percentage: the flag's one statement goes through
    rollout.read_fixed, whichever connection it runs on."""
    seen = []
    original = rollout.read_fixed

    def counting(sql, params, *args, **kwargs):
        if sql == rollout.FLAG_SQL:
            seen.append(params)
        return original(sql, params, *args, **kwargs)

    monkeypatch.setattr(rollout, "read_fixed", counting)
    return seen


def test_at_most_one_flag_query_per_request(app, user_client, user, flag_reads):
    for _ in range(3):
        response = user_client.post("/api/user/credits/consume", json={"feature": "interior"})
        assert response.status_code == 200
        user_client.get("/api/user/credits")
    assert len(flag_reads) == 3


def test_the_process_cache_serves_reads_until_a_change(app, admin, flag_reads):
    app.config["ROLLOUT_CACHE_SECONDS"] = 60
    try:
        rollout.forget()
        assert rollout.percentage() == 100
        for _ in range(5):
            g.pop(rollout._G_KEY, None)
            assert rollout.percentage() == 100
        assert len(flag_reads) == 1
        db.session.add(FeatureFlag(name=rollout.ENFORCEMENT_FLAG, percentage=10))
        db.session.flush()
        g.pop(rollout._G_KEY, None)
        assert rollout.percentage() == 100
        rollout.set_percentage(30, admin.id, "change clears the cache")
        assert rollout.percentage() == 30
    finally:
        app.config["ROLLOUT_CACHE_SECONDS"] = 0
        rollout.forget()


def test_a_rolled_back_change_does_not_linger_in_the_cache(app, admin):
    app.config["ROLLOUT_CACHE_SECONDS"] = 60
    try:
        rollout.set_percentage(10, admin.id, "oops")
        assert rollout.percentage() == 10
        db.session.rollback()
        assert rollout.percentage() == 100
    finally:
        app.config["ROLLOUT_CACHE_SECONDS"] = 0
        rollout.forget()
