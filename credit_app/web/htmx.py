"""htmx, named in one place: the request header that says a request comes from htmx, and the
response headers that tell htmx where to put an answer. No other module spells them."""

from __future__ import annotations

from flask import Response, request

REQUEST_HEADER = "HX-Request"
RETARGET_HEADER = "HX-Retarget"
RESWAP_HEADER = "HX-Reswap"
REDIRECT_HEADER = "HX-Redirect"


def is_htmx_request() -> bool:
    """Whether the current request was made by htmx (it wants a fragment, not a page)."""
    return request.headers.get(REQUEST_HEADER) == "true"


def sent_htmx_header() -> bool:
    """Whether the current request carries the htmx header at all, whatever its value."""
    return bool(request.headers.get(REQUEST_HEADER))


def retarget(response: Response, target: str, swap: str) -> Response:
    """Have htmx put `response` into `target` (a CSS selector) with the `swap` style
    (innerHTML, outerHTML, ...) instead of where the request's element said."""
    response.headers[RETARGET_HEADER] = target
    response.headers[RESWAP_HEADER] = swap
    return response


def redirect(response: Response, location: str) -> Response:
    """Have htmx load `location` as a whole page (a plain redirect would be swapped in)."""
    response.headers[REDIRECT_HEADER] = location
    return response


def vary_on_htmx(response: Response) -> Response:
    """Mark `response` as depending on the htmx header (one URL, page or fragment), so no
    cache gives a fragment to a page load or the other way round."""
    response.vary.add(REQUEST_HEADER)
    return response
