"""Upload a verified model directory to the model store (S3), resumable, the manifest last.

Layout: s3://<bucket>/[<root>/]models/<name>/<revision>/<files> and SHA256SUMS beside them, as the
instances read it (components/model_store.py). Every object is written with SSE-KMS (the stack's key
when --kms-key-id is given, else the bucket's default key, whose S3 Bucket Key the store enables), with an
S3 SHA-256 checksum S3 verifies on receipt, and carries its sha256 as object metadata;
a re-run skips objects whose S3 checksum already matches (read with GetObjectAttributes: the store's policy
refuses object reads from outside the VPC, where staging runs), so an interrupted upload resumes where it
stopped. Large files go up in multipart parts (boto3's transfer manager; a failed multipart upload is
aborted, never left half-written as an object). SHA256SUMS is uploaded only after every file is present
with its digest: its presence is what marks the revision complete, and the instance refuses to start
without it (or with any other manifest than the pinned one).
"""
from __future__ import annotations

import base64
import hashlib
import math
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
        state = _attributes(s3, store.bucket, manifest_key)
        if state is not None:
            if state["checksum"] == _b64(digest):
                return UploadReport([], sorted(digests), manifest_key, digest, already_complete=True)
            raise StageError(f"s3://{store.bucket}/{manifest_key} already holds a different manifest for revision "
                             f"{revision}: a staged revision is immutable; stage under another name, or delete that "
                             "prefix after checking why it differs")
        todo, skipped = [], []
        for rel in sorted(digests):
            state = _attributes(s3, store.bucket, f"{prefix}/{rel}")
            same = state is not None and state["checksum"] == _expected_checksum(
                root / rel, digests[rel], state["parts"], multipart_threshold, multipart_chunksize)
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
                   if (_attributes(s3, store.bucket, f"{prefix}/{rel}") or {}).get("size")
                   != (root / rel).stat().st_size]
        if missing:
            raise StageError(f"after the upload, {', '.join(missing)} are not in the store at their size; "
                             "the manifest was not written, so the revision is not marked complete: run stage again")
        s3.put_object(Bucket=store.bucket, Key=manifest_key, Body=text.encode(), ContentType="text/plain",
                      ChecksumAlgorithm="SHA256", Metadata={"sha256": digest}, **sse)
    except (BotoCoreError, ClientError, Boto3Error, OSError) as exc:     # incl. a dropped connection
        raise StageError(f"upload to s3://{store.bucket}/{prefix} stopped: {exc}. Objects already uploaded are kept "
                         "with their digests, the manifest is not written (the revision is not complete): run the "
                         "same command again to resume") from None
    return UploadReport(todo, skipped, manifest_key, digest)


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _attributes(s3, bucket: str, key: str) -> dict | None:
    """Size, S3 SHA-256 checksum and part count of an object, or None if there is none. GetObjectAttributes,
    not HeadObject: the model store's policy refuses s3:GetObject outside the VPC's endpoint, and the staging
    machine is outside it."""
    from botocore.exceptions import ClientError
    try:
        a = s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=["Checksum", "ObjectSize", "ObjectParts"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    checksum = (a.get("Checksum") or {}).get("ChecksumSHA256")
    return {"size": a.get("ObjectSize"), "checksum": checksum.split("-")[0] if checksum else None,
            "parts": (a.get("ObjectParts") or {}).get("TotalPartsCount")}


def _part_size(size: int, chunksize: int) -> int:
    """The part size boto3's transfer manager uses (s3transfer ChunksizeAdjuster): at most 10,000 parts."""
    while math.ceil(size / chunksize) > 10_000:
        chunksize *= 2
    return max(chunksize, 5 * MiB)


def _expected_checksum(path: Path, sha256_hex: str, parts: int | None, threshold: int, chunksize: int) -> str:
    """The SHA-256 checksum S3 records for `path` uploaded as staging uploads it: the object's own digest for
    a single PUT, else the composite digest of its parts' digests."""
    size = path.stat().st_size
    if size < threshold and not parts:
        return _b64(sha256_hex)
    step = _part_size(size, chunksize)
    digests = []
    with open(path, "rb") as fh:
        while chunk := fh.read(step):
            digests.append(hashlib.sha256(chunk).digest())
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
