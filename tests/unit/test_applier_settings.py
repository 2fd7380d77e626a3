"""The batch applier's settings (``shared.settings.ApplierSettings``): only what it uses, every
problem named at once."""

from __future__ import annotations

import pytest

from shared.data_api import DataApiTarget
from shared.settings import ApplierSettings, SettingsError

APPLIER_ENVIRONMENT = {
    "REDSHIFT_WORKGROUP_NAME": "analytics",
    "REDSHIFT_CLUSTER_IDENTIFIER": "",
    "REDSHIFT_DATABASE": "dev",
    "REDSHIFT_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:consumer",
    "REDSHIFT_DB_USER": "",
    "STAGING_BUCKET": "staging-bucket",
    "STAGING_PREFIX": "cdc/",
    "COPY_IAM_ROLE_ARN": "arn:aws:iam::123456789012:role/copy",
    "PIPELINE_SPEC_PATH": "",
}


def test_the_applier_needs_no_hmac_key_and_no_dead_letter_queue() -> None:
    settings = ApplierSettings.from_mapping(APPLIER_ENVIRONMENT)

    assert settings == ApplierSettings(
        target=DataApiTarget(
            database="dev", workgroup_name="analytics",
            secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:consumer"),
        staging_bucket="staging-bucket", copy_iam_role_arn="arn:aws:iam::123456789012:role/copy",
        staging_prefix="cdc/", spec_path=None, retry_attempts=8)


def test_every_problem_of_the_applier_settings_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        ApplierSettings.from_mapping({"REDSHIFT_WORKGROUP_NAME": "wg",
                                      "REDSHIFT_CLUSTER_IDENTIFIER": "c1",
                                      "STAGING_BUCKET": " ", "REDSHIFT_RETRY_ATTEMPTS": "0"})

    assert str(error.value) == (
        "invalid applier configuration: REDSHIFT_DATABASE is required; set exactly one of "
        "REDSHIFT_WORKGROUP_NAME and REDSHIFT_CLUSTER_IDENTIFIER; REDSHIFT_RETRY_ATTEMPTS must "
        "be a positive integer; STAGING_BUCKET is required (the applier COPYs the landed "
        "batches from it); COPY_IAM_ROLE_ARN is required (the role COPY assumes)")
