"""Upload a verified model directory to the model store (S3), resumable, the manifest last.

Layout: s3://<bucket>/[<root>/]models/<name>/<revision>/<files> and SHA256SUMS beside them, as the
instances read it (components/model_store.py). Every object is written with SSE-KMS (the stack's key
when --kms-key-id is given, else the bucket's default key, whose S3 Bucket Key the store enables), with an
S3 SHA-256 checksum S3 verifies on receipt, and carries its sha256 as object metadata;
a re-run skips objects whose recorded sha256 already matches, so an interrupted upload resumes where it
stopped. Large files go up in multipart parts (boto3's transfer manager; a failed multipart upload is
aborted, never left half-written as an object). SHA256SUMS is uploaded only after every file is present
with its digest: its presence is what marks the revision complete, and the instance refuses to start
without it (or with any other manifest than the pinned one).
"""
from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import manifest
from .errors import StageError

MiB = 2 ** 20


@dataclass(frozen=True)
class Store:
    bucket: str
    root: str = ""

    @classmethod
    def parse(cls, url: str) -> Store:
        m = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?", url or "")
        if not m:
            raise StageError(f"--store {url!r} is not an S3 location: write s3://<bucket> or s3://<bucket>/<prefix>")
        return cls(m.group(1), (m.group(2) or "").strip("/"))

    def prefix(self, name: str, revision: str) -> str:
        return "/".join(p for p in (self.root, "models", name, revision) if p)


@dataclass
class UploadReport:
    uploaded: list[str]
    skipped: list[str]
    manifest_key: str
    manifest_sha256: str
    already_complete: bool = False


def _client(endpoint_url: str | None, region: str | None):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def upload(root: Path, digests: dict[str, str], store: Store, name: str, revision: str, *,
           kms_key_id: str | None = None, endpoint_url: str | None = None, region: str | None = None,
           multipart_threshold: int = 64 * MiB, multipart_chunksize: int = 64 * MiB, progress: bool = True,
           client=None, on_object: Callable[[str], None] | None = None) -> UploadReport:
    """Upload the files of `digests` (relative path -> sha256) and then their manifest."""
    from boto3.exceptions import Boto3Error
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError
    from tqdm import tqdm

    s3 = client or _client(endpoint_url, region)
    prefix = store.prefix(name, revision)
    text = manifest.render(digests)
    digest = hashlib.sha256(text.encode()).hexdigest()
    manifest_key = f"{prefix}/{manifest.MANIFEST}"
    sse = {"ServerSideEncryption": "aws:kms"}
    if kms_key_id:
        sse["SSEKMSKeyId"] = kms_key_id
    try:
        existing = _head(s3, store.bucket, manifest_key)
        if existing is not None:
            body = s3.get_object(Bucket=store.bucket, Key=manifest_key)["Body"].read().decode()
            if body == text:
                return UploadReport([], sorted(digests), manifest_key, digest, already_complete=True)
            raise StageError(f"s3://{store.bucket}/{manifest_key} already holds a different manifest for revision "
                             f"{revision}: a staged revision is immutable; stage under another name, or delete that "
                             "prefix after checking why it differs")
        todo, skipped = [], []
        for rel in sorted(digests):
            head = _head(s3, store.bucket, f"{prefix}/{rel}")
            same = head is not None and head.get("Metadata", {}).get("sha256") == digests[rel] \
                and head.get("ContentLength") == (root / rel).stat().st_size
            (skipped if same else todo).append(rel)
        transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize,
                                  max_concurrency=4)
        total = sum((root / rel).stat().st_size for rel in todo)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                  desc=f"s3://{store.bucket}/{prefix}") as bar:
            for rel in todo:
                s3.upload_file(str(root / rel), store.bucket, f"{prefix}/{rel}", Config=transfer, Callback=bar.update,
                               ExtraArgs={**sse, "ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": digests[rel]}})
                if on_object:
                    on_object(rel)
        missing = [rel for rel in sorted(digests)
                   if (_head(s3, store.bucket, f"{prefix}/{rel}") or {}).get("Metadata", {}).get("sha256")
                   != digests[rel]]
        if missing:
            raise StageError(f"after the upload, {', '.join(missing)} are not in the store with their digest; "
                             "the manifest was not written, so the revision is not marked complete: run stage again")
        s3.put_object(Bucket=store.bucket, Key=manifest_key, Body=text.encode(), ContentType="text/plain",
                      ChecksumSHA256=base64.b64encode(hashlib.sha256(text.encode()).digest()).decode(),
                      Metadata={"sha256": digest}, **sse)
    except (BotoCoreError, ClientError, Boto3Error, OSError) as exc:     # incl. a dropped connection
        raise StageError(f"upload to s3://{store.bucket}/{prefix} stopped: {exc}. Objects already uploaded are kept "
                         "with their digests, the manifest is not written (the revision is not complete): run the "
                         "same command again to resume") from None
    return UploadReport(todo, skipped, manifest_key, digest)


def _head(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
