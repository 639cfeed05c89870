"""Fixtures of the billing tests: the test's clock and the Creem stand-in served over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from credit_app.testing.creem.state import CreemStandIn
from tests.creem_support import START, Clock, served_stand_in


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def creem(app: Flask, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[CreemStandIn]:
    """The stand-in served over HTTP (ambiguous events are re-read from its API), with the
    test's clock, and the app pointed at it."""
    with served_stand_in(app, monkeypatch, clock) as stand_in:
        yield stand_in
