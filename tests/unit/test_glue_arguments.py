"""The Glue job's arguments, parsed once (``shared.glue.arguments.GlueJobSettings``).

Glue passes job parameters as ``--NAME value`` pairs after the script name (AWS Glue User
Guide, "Accessing parameters using getResolvedOptions"); the template passes ``""`` for the
options that do not apply.
"""

from __future__ import annotations

import pytest

from shared.glue.arguments import GlueJobSettings
from shared.settings import SettingsError

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/cdc-stream"
VALID = ["cdc_streaming_job.py", "--STREAM_ARN", STREAM_ARN, "--REDSHIFT_DATABASE", "dev",
         "--REDSHIFT_WORKGROUP_NAME", "wg", "--REDSHIFT_CLUSTER_IDENTIFIER", "",
         "--HMAC_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:k",
         "--DEAD_LETTER_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
         "--STAGING_BUCKET", "staging", "--COPY_IAM_ROLE_ARN", "arn:aws:iam::1:role/copy"]


def test_one_parse_gives_the_pipeline_the_stream_and_the_log_level() -> None:
    settings = GlueJobSettings.from_argv([*VALID, "--LOG_LEVEL", "debug",
                                          "--WINDOW_SIZE=2 minutes"])
    assert settings.pipeline.target.workgroup_name == "wg"
    assert settings.pipeline.target.cluster_identifier is None
    assert settings.pipeline.staging_bucket == "staging"
    assert (settings.stream.stream_name, settings.stream.window_size) == (
        "cdc-stream", "2 minutes")
    assert settings.log_level == "DEBUG"
    assert GlueJobSettings.from_argv(VALID).log_level == "INFO"


def test_bad_job_arguments_name_every_problem_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        GlueJobSettings.from_argv([
            "cdc_streaming_job.py", "--STREAM_ARN", "cdc-stream", "--REDSHIFT_DATABASE", "dev",
            "--REDSHIFT_WORKGROUP_NAME", "wg", "--HMAC_KEY_SECRET_ARN", "arn:secret",
            "--DEAD_LETTER_QUEUE_URL", "https://queue", "--WINDOW_SIZE", "soon",
            "--LOG_LEVEL", "chatty"])
    message = str(error.value)
    assert message.startswith("invalid configuration: ")
    assert message.count("invalid configuration") == 1
    for problem in ("STREAM_ARN must be a Kinesis stream ARN", "WINDOW_SIZE must read like",
                    "STAGING_BUCKET and COPY_IAM_ROLE_ARN are required",
                    "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        assert problem in message


def test_the_lambda_settings_problems_come_with_the_stream_problems() -> None:
    with pytest.raises(SettingsError) as error:
        GlueJobSettings.from_argv(["cdc_streaming_job.py", "--STARTING_POSITION", "AT_TIMESTAMP"])
    message = str(error.value)
    for problem in ("HMAC_KEY_SECRET_ARN is required", "REDSHIFT_DATABASE is required",
                    "STREAM_ARN must be a Kinesis stream ARN",
                    "STARTING_POSITION must be TRIM_HORIZON or LATEST"):
        assert problem in message
