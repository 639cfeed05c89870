"""The limits of what the app accepts, each defined once: the services enforce them, and the
API schemas, the HTML forms, the templates and the error messages read them from here.

Two are the platform config's, since the config needs them too (the request size limit, the
password length default that MIN_PASSWORD_LENGTH can override): this module reads them from
there. The prompt's length is the generation options' (generation/options.py), the webhook
body's the Creem event reader's (billing/creem/events.py).
"""

from __future__ import annotations

from credit_app.platform.config import DEFAULT_MIN_PASSWORD_LENGTH as DEFAULT_MIN_PASSWORD_LENGTH
from credit_app.platform.config import MAX_UPLOAD_BYTES as MAX_UPLOAD_BYTES

# A photo for a generation: its bytes (the config's), pixels and shortest side.
MAX_UPLOAD_MEGABYTES = MAX_UPLOAD_BYTES // (1024 * 1024)
MAX_UPLOAD_PIXELS = 40_000_000
MIN_UPLOAD_SIDE = 64

# Credits one grant, removal or refill target may move (staff, the API's grant).
MAX_GRANT = 100_000
# The reason staff give for a grant, a removal, an account change or a rollout step.
MAX_REASON_LENGTH = 500

# An email address (the longest a mail path allows) and a password.
MAX_EMAIL_LENGTH = 254
MAX_PASSWORD_LENGTH = 256
# A personal API token's name.
MAX_TOKEN_NAME_LENGTH = 80
# A two-factor code: the app's digits, or a recovery code (at most this long).
TOTP_DIGITS = 6
MAX_RECOVERY_CODE_LENGTH = 40

# A client's generation id (the idempotency key of a spend).
MAX_GENERATION_ID_LENGTH = 255
# A page of credit history, and its cursor.
MAX_HISTORY_PAGE = 100
MAX_HISTORY_CURSOR_LENGTH = 200
# Row ids are PostgreSQL integers.
MAX_ID = 2**31 - 1
