"""Where uploads and results are kept: one small interface, two backends.

`FilesystemStorage` keeps them under a folder (`instance/generations` by default), for one
machine where web and worker share a disk. `S3Storage` keeps them in a private bucket of any
S3-compatible service (AWS S3, a Bucketeer-style add-on, MinIO), for dynos that share nothing.
Objects are named by keys such as `12/345/input.png` (user id / reservation id / file); the
database stores the key. Nothing is ever public: results reach their owner only by streaming
through the app after the ownership check.
"""

from __future__ import annotations

import posixpath
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from flask import current_app

from credit_app.errors import StorageUnavailable, StoredObjectMissing


class Storage(Protocol):
    name: str

    def locator(self, key: str) -> str:
        """What the database records for `key`: on the filesystem its absolute path (so every
        process on the machine finds it, whatever its own root), in a bucket the key."""
        ...

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store `data` under `key`, replacing what was there. Raises StorageUnavailable."""
        ...

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        """Store the file at `path` under `key`. Raises StorageUnavailable."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object. Raises StoredObjectMissing, StorageUnavailable."""
        ...

    def download(self, key: str, path: Path) -> None:
        """Copy the object to `path`. Raises StoredObjectMissing, StorageUnavailable."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under the folder `prefix` (missing ones are fine).

        Raises ValueError for an empty prefix, StorageUnavailable.
        """
        ...


def folder_prefix(prefix: str) -> str:
    """`prefix` as a folder (`12/` for `12`). Raises ValueError for an empty one, which would
    name everything."""
    cleaned = prefix.strip().strip("/")
    if not cleaned:
        raise ValueError("refusing to delete every stored object (empty prefix)")
    return cleaned + "/"


def sibling_key(key: str, name: str) -> str:
    """The key of file `name` in the same folder as `key`."""
    return posixpath.join(posixpath.dirname(key), name)


class FilesystemStorage:
    """Objects as files under `root`. Keys are relative to it; absolute keys (rows written
    before keys existed) are used as they are."""

    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def path_of(self, key: str) -> Path:
        return (self.root / key).resolve()

    def locator(self, key: str) -> str:
        return str(self.path_of(key))

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(path).resolve() != target:
            shutil.copyfile(path, target)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StoredObjectMissing() from None

    def download(self, key: str, path: Path) -> None:
        source = self.path_of(key)
        if not source.is_file():
            raise StoredObjectMissing()
        shutil.copyfile(source, path)

    def delete_prefix(self, prefix: str) -> None:
        folder_prefix(prefix)
        folder = self.path_of(prefix.strip())
        if folder != self.root and folder.is_relative_to(self.root):
            shutil.rmtree(folder, ignore_errors=True)


class S3Storage:
    """Objects in a private S3 bucket, under `key_prefix` (so a bucket can be shared)."""

    name = "s3"

    def __init__(self, client: Any, bucket: str, key_prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.key_prefix = key_prefix.strip("/") + "/" if key_prefix.strip("/") else ""

    def object_key(self, key: str) -> str:
        return self.key_prefix + key.lstrip("/")

    def locator(self, key: str) -> str:
        return key

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        with _s3_errors():
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data, **extra)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        with _s3_errors():
            self.client.upload_file(
                str(path), self.bucket, self.object_key(key), ExtraArgs=extra or None
            )

    def open(self, key: str) -> BinaryIO:
        with _s3_errors():
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]

    def download(self, key: str, path: Path) -> None:
        with _s3_errors():
            self.client.download_file(self.bucket, self.object_key(key), str(path))

    def delete_prefix(self, prefix: str) -> None:
        folder = self.object_key(folder_prefix(prefix))
        with _s3_errors():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                objects = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if objects:
                    self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                    )


@contextmanager
def _s3_errors() -> Iterator[None]:
    """Turn botocore's errors into StorageUnavailable, and a missing key into
    StoredObjectMissing."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
            raise StoredObjectMissing() from exc
        raise StorageUnavailable() from exc
    except (BotoCoreError, OSError) as exc:
        raise StorageUnavailable() from exc


S3_CONNECT_TIMEOUT_SECONDS = 5
S3_READ_TIMEOUT_SECONDS = 30


def s3_client(config: Mapping[str, Any]) -> Any:
    """A boto3 S3 client for the config's endpoint, region and keys, with bounded timeouts
    and retries (an outage answers 503 quickly instead of hanging a request)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=config["S3_ENDPOINT_URL"] or None,
        region_name=config["S3_REGION"] or None,
        aws_access_key_id=config["S3_ACCESS_KEY_ID"] or None,
        aws_secret_access_key=config["S3_SECRET_ACCESS_KEY"] or None,
        verify=config.get("S3_CA_BUNDLE") or None,
        config=Config(
            connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
            read_timeout=S3_READ_TIMEOUT_SECONDS,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": config.get("S3_ADDRESSING_STYLE") or "auto"},
            signature_version="s3v4",
        ),
    )


def storage_from_config(config: Mapping[str, Any], clients: dict | None = None) -> Storage:
    """The storage the config names. `clients` caches S3 clients by their settings (boto3
    clients are thread-safe and costly to build)."""
    if config["STORAGE_BACKEND"] == "s3":
        settings = (
            config["S3_ENDPOINT_URL"],
            config["S3_REGION"],
            config["S3_ACCESS_KEY_ID"],
            config["S3_SECRET_ACCESS_KEY"],
            config.get("S3_ADDRESSING_STYLE"),
            config.get("S3_CA_BUNDLE"),
        )
        cache = clients if clients is not None else {}
        client = cache.get(settings)
        if client is None:
            client = cache[settings] = s3_client(config)
        return S3Storage(client, config["S3_BUCKET"], config["S3_KEY_PREFIX"])
    return FilesystemStorage(config["GENERATION_STORAGE_PATH"])


def get_storage() -> Storage:
    """The current app's storage (read from its config each time, so tests can switch it)."""
    clients = current_app.extensions.setdefault("s3_clients", {})
    return storage_from_config(current_app.config, clients)
