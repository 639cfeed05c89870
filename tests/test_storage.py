"""The storage interface on both backends: a folder, and a private bucket on the S3 stand-in
(moto's standalone S3 server), driven through boto3 as production drives S3 or Bucketeer."""

from __future__ import annotations

import pytest

from credit_app.errors import StorageUnavailable, StoredObjectMissing
from credit_app.platform.config import ConfigError, load_config
from credit_app.platform.storage import (
    FilesystemStorage,
    S3Storage,
    sibling_key,
    storage_from_config,
)
from tests.s3_support import (
    admin_client,
    create_bucket,
    free_port,
    object_keys,
    s3_settings,
)


def read(storage, key: str) -> bytes:
    with storage.open(key) as stream:
        return stream.read()


def test_put_open_download_and_replace(storage, tmp_path):
    storage.put("7/31/input.png", b"first", "image/png")
    assert read(storage, "7/31/input.png") == b"first"
    storage.put("7/31/input.png", b"second", "image/png")
    assert read(storage, "7/31/input.png") == b"second"
    source = tmp_path / "result.webp"
    source.write_bytes(b"RIFF result")
    storage.put_file("7/31/output.webp", source, "image/webp")
    copy = tmp_path / "copy.webp"
    storage.download("7/31/output.webp", copy)
    assert copy.read_bytes() == b"RIFF result"


def test_a_missing_object_is_a_404_domain_error(storage, tmp_path):
    with pytest.raises(StoredObjectMissing) as missing:
        storage.open("7/404/input.png")
    assert missing.value.status == 404
    with pytest.raises(StoredObjectMissing):
        storage.download("7/404/input.png", tmp_path / "nothing")


def test_deleting_a_folder_removes_only_that_folder(storage):
    for key in ("7/1/input.png", "7/1/output.png", "7/2/input.png", "70/1/input.png"):
        storage.put(key, b"x")
    storage.delete_prefix("7/")
    for key in ("7/1/input.png", "7/1/output.png", "7/2/input.png"):
        with pytest.raises(StoredObjectMissing):
            storage.open(key)
    assert read(storage, "70/1/input.png") == b"x"
    storage.delete_prefix("7/")


@pytest.mark.parametrize("prefix", ["", "/", "  "])
def test_an_empty_prefix_never_deletes_everything(storage, prefix):
    storage.put("7/1/input.png", b"x")
    with pytest.raises(ValueError):
        storage.delete_prefix(prefix)
    assert read(storage, "7/1/input.png") == b"x"


def test_the_filesystem_never_deletes_outside_its_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    storage = FilesystemStorage(tmp_path / "store")
    storage.delete_prefix("../outside/")
    storage.delete_prefix(str(outside))
    assert (outside / "keep.txt").read_text() == "mine"


def test_rows_record_the_absolute_path_on_disk_and_the_key_in_a_bucket(tmp_path):
    assert FilesystemStorage(tmp_path / "store").locator("3/9/input.png") == str(
        tmp_path / "store" / "3" / "9" / "input.png"
    )
    assert (
        S3Storage(client=None, bucket="b", key_prefix="generations").locator("3/9/input.png")
        == "3/9/input.png"
    )


def test_the_filesystem_reads_absolute_keys_of_older_rows(tmp_path):
    storage = FilesystemStorage(tmp_path / "store")
    storage.put("3/9/input.png", b"old row")
    absolute = str(tmp_path / "store" / "3" / "9" / "input.png")
    assert read(storage, absolute) == b"old row"
    assert sibling_key(absolute, "output.png") == str(tmp_path / "store/3/9/output.png")


def test_s3_keys_live_under_the_prefix_and_objects_are_private(s3_endpoint, s3_bucket):
    storage = storage_from_config(
        {**s3_settings(s3_endpoint, s3_bucket, "uploads"), "GENERATION_STORAGE_PATH": ""}
    )
    storage.put("5/8/input.jpg", b"jpeg", "image/jpeg")
    assert object_keys(s3_endpoint, s3_bucket) == ["uploads/5/8/input.jpg"]
    client = admin_client(s3_endpoint)
    head = client.head_object(Bucket=s3_bucket, Key="uploads/5/8/input.jpg")
    assert head["ContentType"] == "image/jpeg"
    grants = client.get_object_acl(Bucket=s3_bucket, Key="uploads/5/8/input.jpg")["Grants"]
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
    assert all(grant["Grantee"].get("URI") is None for grant in grants)


def test_one_s3_client_per_setting(s3_endpoint, s3_bucket):
    clients: dict = {}
    settings = {**s3_settings(s3_endpoint, s3_bucket), "GENERATION_STORAGE_PATH": ""}
    first = storage_from_config(settings, clients)
    second = storage_from_config(settings, clients)
    assert isinstance(first, S3Storage) and first.client is second.client and len(clients) == 1


def test_an_unreachable_s3_is_storage_unavailable_with_a_retry_after(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    storage = storage_from_config({**s3_settings(closed, "nowhere"), "GENERATION_STORAGE_PATH": ""})
    with pytest.raises(StorageUnavailable) as unavailable:
        storage.put("1/1/input.png", b"x")
    assert unavailable.value.status == 503 and unavailable.value.retry_after > 0
    with pytest.raises(StorageUnavailable):
        storage.open("1/1/input.png")
    with pytest.raises(StorageUnavailable):
        storage.delete_prefix("1/")


def test_s3_over_tls_trusts_only_the_given_certificates(s3_tls_stand_in):
    endpoint, certificate = s3_tls_stand_in
    bucket = create_bucket(endpoint, certificate)
    trusting = storage_from_config(
        {**s3_settings(endpoint, bucket, ca_bundle=certificate), "GENERATION_STORAGE_PATH": ""}
    )
    trusting.put("4/2/input.png", b"over tls")
    assert read(trusting, "4/2/input.png") == b"over tls"
    default_trust = storage_from_config(
        {**s3_settings(endpoint, bucket), "GENERATION_STORAGE_PATH": ""}
    )
    with pytest.raises(StorageUnavailable):
        default_trust.open("4/2/input.png")


def test_a_missing_bucket_is_storage_unavailable(s3_endpoint):
    storage = storage_from_config(
        {**s3_settings(s3_endpoint, "no-such-bucket"), "GENERATION_STORAGE_PATH": ""}
    )
    with pytest.raises(StorageUnavailable):
        storage.put("1/1/input.png", b"x")


STORAGE_VARIABLES = (
    "STORAGE_BACKEND",
    "S3_CA_BUNDLE",
    "AWS_CA_BUNDLE",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_KEY_PREFIX",
    "S3_ADDRESSING_STYLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "BUCKETEER_BUCKET_NAME",
    "BUCKETEER_AWS_ACCESS_KEY_ID",
    "BUCKETEER_AWS_SECRET_ACCESS_KEY",
    "BUCKETEER_AWS_REGION",
    "DYNO",
    "APP_ENV",
    "ALLOW_EMBEDDED_SERVICES",
)


@pytest.fixture
def storage_env(monkeypatch, tmp_path):
    """No storage settings, and servers named (never reached), so nothing embedded starts."""
    for name in STORAGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://db.internal/test")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.internal/app")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    return monkeypatch


def production_env(monkeypatch) -> None:
    for name, value in {
        "SECRET_KEY": "s" * 32,
        "DATABASE_URL": "postgres://db.internal/app",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "CREEM_API_KEY": "creem_live_key",
        "CREEM_WEBHOOK_SECRET": "whsec_x",
        "CREEM_PRODUCT_PRO_MONTHLY": "prod_m",
        "CREEM_PRODUCT_PRO_YEARLY": "prod_y",
        "MAIL_URL": "smtp://mail.internal:587",
    }.items():
        monkeypatch.setenv(name, value)


def test_the_folder_under_the_instance_is_the_default(storage_env, tmp_path):
    settings = load_config("testing")
    assert settings["STORAGE_BACKEND"] == "filesystem"
    assert settings["GENERATION_STORAGE_PATH"] == (tmp_path / "generations").resolve()
    assert isinstance(storage_from_config(settings), FilesystemStorage)


def test_a_bucketeer_add_on_is_picked_up(storage_env):
    storage_env.setenv("BUCKETEER_BUCKET_NAME", "bucketeer-1234")
    storage_env.setenv("BUCKETEER_AWS_ACCESS_KEY_ID", "AKIABUCKETEER")
    storage_env.setenv("BUCKETEER_AWS_SECRET_ACCESS_KEY", "bucketeer-secret")
    storage_env.setenv("BUCKETEER_AWS_REGION", "eu-west-1")
    settings = load_config("testing")
    assert (
        settings["STORAGE_BACKEND"],
        settings["S3_BUCKET"],
        settings["S3_ACCESS_KEY_ID"],
        settings["S3_SECRET_ACCESS_KEY"],
        settings["S3_REGION"],
        settings["S3_KEY_PREFIX"],
    ) == ("s3", "bucketeer-1234", "AKIABUCKETEER", "bucketeer-secret", "eu-west-1", "generations")


def test_own_s3_settings_win_over_the_add_on(storage_env):
    storage_env.setenv("BUCKETEER_BUCKET_NAME", "bucketeer-1234")
    storage_env.setenv("S3_BUCKET", "my-bucket")
    storage_env.setenv("AWS_ACCESS_KEY_ID", "AKIAMINE")
    storage_env.setenv("AWS_DEFAULT_REGION", "us-west-2")
    settings = load_config("testing")
    assert (settings["S3_BUCKET"], settings["S3_ACCESS_KEY_ID"], settings["S3_REGION"]) == (
        "my-bucket",
        "AKIAMINE",
        "us-west-2",
    )


@pytest.mark.parametrize(
    "variables,message",
    [
        ({"STORAGE_BACKEND": "ftp"}, "STORAGE_BACKEND must be filesystem or s3"),
        ({"STORAGE_BACKEND": "s3"}, "needs S3_BUCKET"),
        ({"S3_BUCKET": "b", "S3_ADDRESSING_STYLE": "sideways"}, "S3_ADDRESSING_STYLE"),
    ],
)
def test_bad_storage_settings_fail_at_start(storage_env, variables, message):
    for name, value in variables.items():
        storage_env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_config("testing")


def test_a_dyno_refuses_the_local_disk(storage_env):
    production_env(storage_env)
    storage_env.setenv("DYNO", "web.1")
    with pytest.raises(ConfigError, match="shared storage"):
        load_config("production")
    storage_env.setenv("S3_BUCKET", "my-bucket")
    assert load_config("production")["STORAGE_BACKEND"] == "s3"


def test_one_machine_in_production_may_keep_the_local_disk(storage_env):
    production_env(storage_env)
    assert load_config("production")["STORAGE_BACKEND"] == "filesystem"
