"""The functions' configuration, validated once (Lambda environment, Glue job arguments).

The consumers (``PipelineSettings``: both paths read the same names) and the batch applier
(``ApplierSettings``: only what it uses) share the warehouse's names; empty values count as
unset (the template passes ``""`` for options that do not apply). Every problem is reported at
once, naming the setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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
        get = _getter(values)
        problems = [f"{name} is required" for name in
                    ("HMAC_KEY_SECRET_ARN", "DEAD_LETTER_QUEUE_URL") if get(name) is None]
        problems += _warehouse_problems(get)
        if get("STAGING_BUCKET") and not get("COPY_IAM_ROLE_ARN"):
            problems.append("STAGING_BUCKET needs COPY_IAM_ROLE_ARN (the role COPY assumes)")
        if get("APPLIER_QUEUE_URL") and not get("STAGING_BUCKET"):
            problems.append("APPLIER_QUEUE_URL needs STAGING_BUCKET (batches are landed in S3)")
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return cls(
            hmac_key_secret_arn=str(get("HMAC_KEY_SECRET_ARN")),
            target=_target(get),
            dead_letter_queue_url=str(get("DEAD_LETTER_QUEUE_URL")),
            staging_bucket=get("STAGING_BUCKET"),
            staging_prefix=get("STAGING_PREFIX") or "staging",
            copy_iam_role_arn=get("COPY_IAM_ROLE_ARN"),
            spec_path=get("PIPELINE_SPEC_PATH"),
            applier_queue_url=get("APPLIER_QUEUE_URL"),
            retry_attempts=int(get("REDSHIFT_RETRY_ATTEMPTS") or "8"),
        )


@dataclass(frozen=True)
class ApplierSettings:
    """The batch applier's configuration: the warehouse, and the staging bucket the consumers
    land in (it COPYs the landed batches from there with the COPY role, writes its manifest
    there and deletes what it applied). It reads neither the HMAC key nor the consumers'
    dead-letter queue, so it is given neither (least privilege); nor ``APPLIER_QUEUE_URL``:
    its queue is its event's source."""

    target: DataApiTarget
    staging_bucket: str
    copy_iam_role_arn: str
    staging_prefix: str = "staging"
    spec_path: str | None = None
    retry_attempts: int = 8

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> ApplierSettings:
        get = _getter(values)
        problems = _warehouse_problems(get)
        if get("STAGING_BUCKET") is None:
            problems.append("STAGING_BUCKET is required (the applier COPYs the landed batches "
                            "from it)")
        if get("COPY_IAM_ROLE_ARN") is None:
            problems.append("COPY_IAM_ROLE_ARN is required (the role COPY assumes)")
        if problems:
            raise SettingsError("invalid applier configuration: " + "; ".join(problems))
        return cls(
            target=_target(get),
            staging_bucket=str(get("STAGING_BUCKET")),
            copy_iam_role_arn=str(get("COPY_IAM_ROLE_ARN")),
            staging_prefix=get("STAGING_PREFIX") or "staging",
            spec_path=get("PIPELINE_SPEC_PATH"),
            retry_attempts=int(get("REDSHIFT_RETRY_ATTEMPTS") or "8"),
        )


def _getter(values: Mapping[str, str]) -> Callable[[str], str | None]:
    """A setting's value, stripped; None when unset or blank."""
    def get(name: str) -> str | None:
        value = values.get(name)
        return value.strip() if value and value.strip() else None
    return get


def _warehouse_problems(get: Callable[[str], str | None]) -> list[str]:
    """What is wrong with the warehouse settings both functions read."""
    problems = [] if get("REDSHIFT_DATABASE") else ["REDSHIFT_DATABASE is required"]
    if bool(get("REDSHIFT_WORKGROUP_NAME")) == bool(get("REDSHIFT_CLUSTER_IDENTIFIER")):
        problems.append(
            "set exactly one of REDSHIFT_WORKGROUP_NAME and REDSHIFT_CLUSTER_IDENTIFIER")
    attempts = get("REDSHIFT_RETRY_ATTEMPTS") or "8"
    if not attempts.isdigit() or int(attempts) < 1:
        problems.append("REDSHIFT_RETRY_ATTEMPTS must be a positive integer")
    return problems


def _target(get: Callable[[str], str | None]) -> DataApiTarget:
    return DataApiTarget(
        database=str(get("REDSHIFT_DATABASE")),
        workgroup_name=get("REDSHIFT_WORKGROUP_NAME"),
        cluster_identifier=get("REDSHIFT_CLUSTER_IDENTIFIER"),
        secret_arn=get("REDSHIFT_SECRET_ARN"),
        db_user=get("REDSHIFT_DB_USER"),
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
