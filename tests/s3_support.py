"""The S3 stand-in for the tests: moto's standalone server, a real HTTP server speaking the S3
protocol, started once per test run on a free local port (the way the Creem stand-in serves
Creem's API). The app talks to it through boto3, exactly as it talks to S3 or Bucketeer."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from credit_app.platform.storage import s3_client

S3_STAND_IN_ACCESS_KEY = "stand-in-access-key"
S3_STAND_IN_SECRET_KEY = "stand-in-secret-key"
S3_STAND_IN_REGION = "us-east-1"
START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, for a TLS stand-in; returns (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "s3-stand-in.pem", folder / "s3-stand-in.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def start_s3_stand_in(tls: tuple[Path, Path] | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m moto.server` on a free port, over TLS with `tls` (cert, key); returns the
    process and its endpoint URL.

    Raises RuntimeError when it does not answer within START_TIMEOUT_SECONDS.
    """
    port = free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    if tls:
        command += ["-c", str(tls[0]), "-k", str(tls[1])]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=str(tls[0])) if tls else True
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 stand-in exited: {process.stderr.read()[-2000:]!r}")
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1, verify=verify)
            return process, endpoint
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the S3 stand-in did not start")


def s3_settings(
    endpoint: str, bucket: str, key_prefix: str = "generations", ca_bundle: Path | None = None
) -> dict[str, Any]:
    """The app config that points the storage at the stand-in's `bucket`."""
    return {
        "S3_CA_BUNDLE": str(ca_bundle) if ca_bundle else "",
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": S3_STAND_IN_REGION,
        "S3_ACCESS_KEY_ID": S3_STAND_IN_ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": S3_STAND_IN_SECRET_KEY,
        "S3_KEY_PREFIX": key_prefix,
        "S3_ADDRESSING_STYLE": "path",
    }


def s3_environment(endpoint: str, bucket: str, ca_bundle: Path | None = None) -> dict[str, str]:
    """The same settings as environment variables, for an app in another process."""
    return {
        **({"AWS_CA_BUNDLE": str(ca_bundle)} if ca_bundle else {}),
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": S3_STAND_IN_REGION,
        "AWS_ACCESS_KEY_ID": S3_STAND_IN_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_STAND_IN_SECRET_KEY,
        "S3_ADDRESSING_STYLE": "path",
    }


def create_bucket(endpoint: str, ca_bundle: Path | None = None) -> str:
    """A new private bucket on the stand-in; returns its name."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    admin_client(endpoint, ca_bundle).create_bucket(Bucket=bucket)
    return bucket


def admin_client(endpoint: str, ca_bundle: Path | None = None) -> Any:
    """A boto3 client for the test itself, to look inside the buckets."""
    return s3_client(s3_settings(endpoint, "unused", ca_bundle=ca_bundle))


def object_keys(endpoint: str, bucket: str, ca_bundle: Path | None = None) -> list[str]:
    listing = admin_client(endpoint, ca_bundle).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", ()))
