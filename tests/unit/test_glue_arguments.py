"""The Glue job's arguments, parsed once (``shared.glue.arguments.GlueJobSettings``).

Glue passes job parameters as ``--NAME value`` pairs after the script name (AWS Glue User
Guide, "Accessing parameters using getResolvedOptions"); the template passes ``""`` for the
options that do not apply.
"""

from __future__ import annotations

import pytest

from shared.glue.arguments import GlueJobSettings, kinesis_source_options
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


CONSUMER_ARN = f"{STREAM_ARN}/consumer/stack-kinesis-consumer:1764547200"


def test_a_fan_out_consumer_of_the_stream_becomes_the_sources_fanout_consumer_arn() -> None:
    """"Using enhanced fan-out in Kinesis streaming jobs" (AWS Glue Developer Guide): the
    Kinesis connection option ``fanoutConsumerARN`` names the registered consumer."""
    settings = GlueJobSettings.from_argv([*VALID, "--FANOUT_CONSUMER_ARN", CONSUMER_ARN])
    assert settings.stream.fanout_consumer_arn == CONSUMER_ARN
    assert kinesis_source_options(settings.stream)["fanoutConsumerARN"] == CONSUMER_ARN
    assert kinesis_source_options(settings.stream)["streamARN"] == STREAM_ARN


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_consumer_arn_reads_the_stream_without_fan_out(value: str) -> None:
    settings = GlueJobSettings.from_argv([*VALID, "--FANOUT_CONSUMER_ARN", value])
    assert settings.stream.fanout_consumer_arn == ""
    assert "fanoutConsumerARN" not in kinesis_source_options(settings.stream)
    assert "fanoutConsumerARN" not in kinesis_source_options(
        GlueJobSettings.from_argv(VALID).stream)


@pytest.mark.parametrize("value", [
    STREAM_ARN,  # the stream, not a consumer of it
    "stack-kinesis-consumer",
    f"{STREAM_ARN}/consumer/",  # no consumer name
    f"{STREAM_ARN}/consumer/c",  # no registration time (ConsumerARN's pattern ends :[0-9]+)
    "arn:aws:kinesis:us-east-1:123456789012:stream/cdc-stream/consumer/c:17x",
])
def test_a_consumer_arn_that_is_none_says_what_it_must_look_like(value: str) -> None:
    with pytest.raises(SettingsError) as error:
        GlueJobSettings.from_argv([*VALID, "--FANOUT_CONSUMER_ARN", value])
    message = str(error.value)
    assert "FANOUT_CONSUMER_ARN must be a Kinesis stream consumer's ARN" in message
    assert "stream/<stream>/consumer/<name>:<timestamp>" in message
    assert "or empty to read without enhanced fan-out" in message


def test_a_consumer_of_another_stream_is_refused_with_both_streams_named() -> None:
    other = "arn:aws:kinesis:us-east-1:123456789012:stream/other-stream"
    with pytest.raises(SettingsError) as error:
        GlueJobSettings.from_argv([*VALID, "--FANOUT_CONSUMER_ARN", f"{other}/consumer/c:1"])
    assert str(error.value) == (
        f"invalid configuration: FANOUT_CONSUMER_ARN is a consumer of {other}, not of "
        f"STREAM_ARN {STREAM_ARN}: register the consumer on the stream the job reads")


def test_a_bad_consumer_arn_comes_with_the_other_problems() -> None:
    with pytest.raises(SettingsError) as error:
        GlueJobSettings.from_argv([*VALID, "--WINDOW_SIZE", "soon",
                                   "--FANOUT_CONSUMER_ARN", "consumer"])
    message = str(error.value)
    assert "WINDOW_SIZE must read like" in message
    assert "FANOUT_CONSUMER_ARN must be" in message
