"""The app plus two probe routes, so the bench can time `@credit_required` over HTTP.

Served only by the benchmark (`gunicorn bench.probe_app:app`), never by the product:

- POST /bench/probe/plain   signs the caller in (`@login_required`) and answers JSON.
- POST /bench/probe/credit  does the same behind `@credit_required("interior")`, then commits
                            the reservation and the request, as a finished generation would.

The difference between the two is what the credit check adds to a generation request.
"""

from __future__ import annotations

from flask import Response, jsonify
from flask_login import current_user, login_required

from credit_app import create_app
from credit_app.models import CreditReservation
from credit_app.platform.extensions import csrf, db
from credit_app.services import credits
from credit_app.web.credit_check import credit_required

PLAIN_PATH = "/bench/probe/plain"
CREDIT_PATH = "/bench/probe/credit"

app = create_app()


@login_required
def bench_probe_plain() -> Response:
    """The baseline: authentication and a JSON answer, no credit work."""
    return jsonify(success=True, user_id=current_user.id)


@credit_required("interior")
def bench_probe_credit(reservation: CreditReservation) -> Response:
    """The same answer after reserving a credit and committing that reservation.

    The ids are read before the commit, which expires the session's objects: reading them
    after it would add two SELECTs that the plain view does not pay.
    """
    user_id, reservation_id = current_user.id, reservation.id
    credits.commit_reservation(reservation_id, user_id)
    db.session.commit()
    return jsonify(success=True, user_id=user_id, reservation_id=reservation_id)


for path, view in ((PLAIN_PATH, bench_probe_plain), (CREDIT_PATH, bench_probe_credit)):
    app.add_url_rule(path, view_func=csrf.exempt(view), methods=["POST"])
