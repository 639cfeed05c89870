"""The plans a user can buy: Pro monthly and Pro yearly, each one configured Creem product.

Only these products give Pro. A subscription to any other product of the same Creem store is
stored (so admins can see it) and gives nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import current_app

from credit_app.errors import UnknownPack, UnknownPlan


@dataclass(frozen=True)
class Plan:
    key: str
    product_id: str
    name: str
    price: str
    interval: str

    @property
    def amount(self) -> Decimal | None:
        """The number in the configured price ("$190 / year" -> 190), None without one."""
        match = _AMOUNT.search(self.price)
        return Decimal(match.group(0).replace(",", "")) if match else None

    @property
    def currency(self) -> str:
        """What the configured price writes before its number ("$", "€"), or ""."""
        match = _AMOUNT.search(self.price)
        return self.price[: match.start()].strip() if match else ""

    def money(self, amount: Decimal) -> str:
        """`amount` in this plan's currency, without cents when it is whole."""
        text = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
        return f"{self.currency}{text}"


_AMOUNT = re.compile(r"\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class YearlySaving:
    """What the yearly plan saves against twelve months of the monthly one."""

    amount: str
    percent: int
    per_month: str


def yearly_saving(all_plans: list[Plan]) -> YearlySaving | None:
    """The saving of the yearly plan, or None when it saves nothing or a price has no number."""
    monthly = next((plan for plan in all_plans if plan.interval == "month"), None)
    yearly = next((plan for plan in all_plans if plan.interval == "year"), None)
    if monthly is None or yearly is None or not monthly.amount or not yearly.amount:
        return None
    twelve_months = monthly.amount * 12
    saved = twelve_months - yearly.amount
    if saved <= 0:
        return None
    return YearlySaving(
        yearly.money(saved),
        int(saved * 100 / twelve_months),
        yearly.money((yearly.amount / 12).quantize(Decimal("0.01"))),
    )


def plans(config: Mapping[str, Any] | None = None) -> list[Plan]:
    """Pro monthly and Pro yearly, from configuration (Creem product ids, names, prices)."""
    config = config or current_app.config
    return [
        Plan(
            "pro_monthly",
            config["CREEM_PRODUCT_PRO_MONTHLY"],
            config["PRO_MONTHLY_NAME"],
            config["PRO_MONTHLY_PRICE"],
            "month",
        ),
        Plan(
            "pro_yearly",
            config["CREEM_PRODUCT_PRO_YEARLY"],
            config["PRO_YEARLY_NAME"],
            config["PRO_YEARLY_PRICE"],
            "year",
        ),
    ]


def get_plan(key: str) -> Plan:
    """Raises UnknownPlan."""
    for plan in plans():
        if plan.key == key:
            return plan
    raise UnknownPlan(
        f"Unknown plan {key!r}; expected one of: {', '.join(plan.key for plan in plans())}."
    )


def plan_for_product(product_id: str | None) -> Plan | None:
    """The plan a Creem product is, or None for any other product."""
    return next((plan for plan in plans() if plan.product_id == product_id), None)


def is_pro_product(product_id: str | None) -> bool:
    return plan_for_product(product_id) is not None


def other_plan(plan: Plan) -> Plan:
    """Monthly for yearly and yearly for monthly: where a plan switch goes."""
    return next(candidate for candidate in plans() if candidate.key != plan.key)


@dataclass(frozen=True)
class Pack:
    """A top-up credit pack: a Creem one-time product that grants `credits` once per order."""

    key: str
    product_id: str
    name: str
    price: str
    credits: int


def packs(config: Mapping[str, Any] | None = None) -> list[Pack]:
    """The credit packs on sale, from configuration (config.py `_pack_config`); a pack whose
    Creem product id is not set is not sold."""
    config = config or current_app.config
    return [Pack(**pack) for pack in config["CREDIT_PACKS"] if pack["product_id"]]


def get_pack(key: str) -> Pack:
    """Raises UnknownPack."""
    for pack in packs():
        if pack.key == key:
            return pack
    raise UnknownPack(
        f"Unknown credit pack {key!r}; expected one of: {', '.join(pack.key for pack in packs())}."
    )


def pack_for_product(product_id: str | None) -> Pack | None:
    """The pack a Creem product is, or None."""
    return next((pack for pack in packs() if pack.product_id == product_id), None)
