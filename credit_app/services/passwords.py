"""Password hashing: argon2id at OWASP's parameters, reading older Werkzeug hashes too.

OWASP's Password Storage Cheat Sheet asks for argon2id with at least 19 MiB of memory, two
iterations and one degree of parallelism; that is what new hashes use. Hashes made before
(Werkzeug's `scrypt:` and `pbkdf2:` formats) still verify, and `needs_rehash` says to
replace them at the next sign-in.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from werkzeug.security import check_password_hash

MEMORY_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1
_hasher = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_KIB,
    parallelism=PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)
LEGACY_PREFIXES = ("scrypt:", "pbkdf2:")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when `password` matches `stored_hash` (argon2id, or a legacy Werkzeug hash)."""
    if stored_hash.startswith(LEGACY_PREFIXES):
        return check_password_hash(stored_hash, password)
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True for a legacy hash or an argon2 hash made with weaker parameters than today's."""
    if stored_hash.startswith(LEGACY_PREFIXES):
        return True
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


# Compared against when the email is unknown, so that sign-in takes as long either way.
DUMMY_HASH = hash_password("not-a-real-password")
