"""The limits are defined once (credit_app/services/limits.py, the upload size from the
config); what is derived from them must still fit together."""

from credit_app.services import limits
from credit_app.web.responses import UPLOAD_TOO_LARGE_MESSAGE


def test_a_request_can_carry_the_largest_photo_a_form_takes(app):
    assert app.config["MAX_CONTENT_LENGTH"] > limits.MAX_UPLOAD_BYTES


def test_the_too_large_message_names_the_upload_limit():
    assert f"up to {limits.MAX_UPLOAD_MEGABYTES} MB" in UPLOAD_TOO_LARGE_MESSAGE
    assert limits.MAX_UPLOAD_MEGABYTES * 1024 * 1024 == limits.MAX_UPLOAD_BYTES
