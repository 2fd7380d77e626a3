"""The consumer's configuration, validated once (Lambda environment, Glue job arguments).

Both paths read the same names; empty values count as unset (the template passes ``""`` for
options that do not apply). Every problem is reported at once, naming the setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from shared.data_api import DataApiTarget

MIN_HMAC_KEY_LENGTH = 32


class SettingsError(ValueError):
    """The configuration is incomplete or contradictory."""


@dataclass(frozen=True)
class PipelineSettings:
    hmac_key_secret_arn: str
    target: DataApiTarget
    dead_letter_queue_url: str
    staging_bucket: str | None = None
    staging_prefix: str = "staging"
    copy_iam_role_arn: str | None = None
    spec_path: str | None = None
    # The single applier's queue (``shared.applier``): consumers land batches in S3 and announce
    # them there instead of applying them themselves.
    applier_queue_url: str | None = None
    retry_attempts: int = 8  # per Data API call and per transaction (serialization conflicts)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> PipelineSettings:
        def get(name: str) -> str | None:
            value = values.get(name)
            return value.strip() if value and value.strip() else None

        problems = [f"{name} is required" for name in
                    ("HMAC_KEY_SECRET_ARN", "REDSHIFT_DATABASE", "DEAD_LETTER_QUEUE_URL")
                    if get(name) is None]
        workgroup, cluster = get("REDSHIFT_WORKGROUP_NAME"), get("REDSHIFT_CLUSTER_IDENTIFIER")
        if bool(workgroup) == bool(cluster):
            problems.append(
                "set exactly one of REDSHIFT_WORKGROUP_NAME and REDSHIFT_CLUSTER_IDENTIFIER")
        if get("STAGING_BUCKET") and not get("COPY_IAM_ROLE_ARN"):
            problems.append("STAGING_BUCKET needs COPY_IAM_ROLE_ARN (the role COPY assumes)")
        if get("APPLIER_QUEUE_URL") and not get("STAGING_BUCKET"):
            problems.append("APPLIER_QUEUE_URL needs STAGING_BUCKET (batches are landed in S3)")
        attempts = get("REDSHIFT_RETRY_ATTEMPTS") or "8"
        if not attempts.isdigit() or int(attempts) < 1:
            problems.append("REDSHIFT_RETRY_ATTEMPTS must be a positive integer")
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return cls(
            hmac_key_secret_arn=str(get("HMAC_KEY_SECRET_ARN")),
            target=DataApiTarget(
                database=str(get("REDSHIFT_DATABASE")),
                workgroup_name=workgroup,
                cluster_identifier=cluster,
                secret_arn=get("REDSHIFT_SECRET_ARN"),
                db_user=get("REDSHIFT_DB_USER"),
            ),
            dead_letter_queue_url=str(get("DEAD_LETTER_QUEUE_URL")),
            staging_bucket=get("STAGING_BUCKET"),
            staging_prefix=get("STAGING_PREFIX") or "staging",
            copy_iam_role_arn=get("COPY_IAM_ROLE_ARN"),
            spec_path=get("PIPELINE_SPEC_PATH"),
            applier_queue_url=get("APPLIER_QUEUE_URL"),
            retry_attempts=int(attempts),
        )


def hmac_key_from_secret(secret_value: str) -> bytes:
    """The HMAC key from the secret's value: the string itself, or its ``hmac_key`` field.

    The stack generates a 64-character random string; a JSON secret ``{"hmac_key": ...}`` is
    accepted too. Both paths use this one function, so they produce the same tokens.
    """
    value = secret_value.strip()
    if value.startswith("{"):
        try:
            value = str(json.loads(value)["hmac_key"]).strip()
        except (ValueError, KeyError, TypeError):
            raise SettingsError("the HMAC secret is JSON without an 'hmac_key' string") from None
    if len(value) < MIN_HMAC_KEY_LENGTH:
        raise SettingsError(f"the HMAC key must be at least {MIN_HMAC_KEY_LENGTH} characters")
    return value.encode("utf-8")
