"""The S3 side of the writer, against a stand-in that enforces S3's documented limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.redshift_writer import S3Stager
from shared.spec import load_spec


class LimitedS3:
    """DeleteObjects takes at most 1,000 keys per request ("DeleteObjects", Amazon S3 API
    Reference); objects are kept in a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[Key] = Body

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> None:
        if len(Delete["Objects"]) > 1000:
            raise ValueError("MalformedXML: more than 1,000 keys")
        for entry in Delete["Objects"]:
            self.objects.pop(entry["Key"], None)


def test_an_applier_deletes_any_number_of_applied_objects() -> None:
    s3 = LimitedS3()
    stager = S3Stager(s3, "bucket", "staging", "arn:aws:iam::1:role/copy")
    keys = [stager.put(f"{n:032x}", b"{}") for n in range(2500)]
    stager.delete(keys)
    assert s3.objects == {}


def test_a_manifest_lists_every_key_as_optional() -> None:
    s3 = LimitedS3()
    stager = S3Stager(s3, "bucket", "/staging/", "arn:aws:iam::1:role/copy")
    key = stager.put_manifest("m", ["staging/a.json", "staging/b.json"])
    assert key == "staging/manifests/m.manifest"
    assert json.loads(s3.objects[key]) == {"entries": [
        {"url": "s3://bucket/staging/a.json", "mandatory": False},
        {"url": "s3://bucket/staging/b.json", "mandatory": False}]}


@pytest.mark.parametrize("key, manifest", [("staging/b.json", False),
                                           ("staging/manifests/m.manifest", True)])
def test_copy_reads_a_manifest_only_for_a_manifest_key(key: str, manifest: bool) -> None:
    stager = S3Stager(LimitedS3(), "bucket", "staging", "arn:aws:iam::1:role/copy")
    assert stager.copy_statement(load_spec(), key).endswith(" MANIFEST") is manifest
