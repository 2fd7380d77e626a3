"""The Glue job's arguments, parsed once into ``GlueJobSettings``, and the options of the Glue
API calls they decide.

Glue hands a job its parameters as ``--NAME value`` pairs after the script's name in
``sys.argv`` (AWS Glue User Guide, "Calling AWS Glue APIs in Python" / "Accessing parameters
using getResolvedOptions"). The job reads the Lambda consumer's setting names
(``shared.settings.PipelineSettings``) plus the stream-reading ones (``StreamSettings``);
``GlueJobSettings.from_mapping`` validates both in one pass and names every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.settings import PipelineSettings, SettingsError

STARTING_POSITIONS = {"TRIM_HORIZON": "trim_horizon", "LATEST": "latest"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PROBLEMS_PREFIX = "invalid configuration: "  # how SettingsError messages start
# A stream consumer's ARN: the stream's ARN, "/consumer/", the consumer's name, ":" and the
# registration's timestamp (ConsumerDescription.ConsumerARN's pattern, Kinesis API Reference,
# https://docs.aws.amazon.com/kinesis/latest/APIReference/API_ConsumerDescription.html).
_CONSUMER_ARN = re.compile(
    r"(?P<stream>arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[a-zA-Z0-9_.-]+)"
    r"/consumer/[a-zA-Z0-9_.-]+:[0-9]+")


def parse_job_arguments(argv: Sequence[str]) -> dict[str, str]:
    """The ``--NAME value`` (or ``--NAME=value``) pairs of a Glue job's ``sys.argv``.

    Unlike ``getResolvedOptions`` this tolerates absent options and empty values (the template
    passes ``""`` for options that do not apply); ``GlueJobSettings`` validates what is read.
    """
    values: dict[str, str] = {}
    position = 0
    while position < len(argv):
        token = argv[position]
        position += 1
        if not token.startswith("--"):
            continue
        name, sep, value = token[2:].partition("=")
        if not sep and position < len(argv) and not argv[position].startswith("--"):
            value = argv[position]
            position += 1
        values[name] = value
    return values


def consumer_arn_problems(consumer_arn: str, stream_arn: str) -> list[str]:
    """What is wrong with ``consumer_arn`` as an enhanced fan-out consumer of ``stream_arn``'s
    stream (nothing: an empty list). "Kinesis connection option reference" (AWS Glue
    Developer Guide): ``fanoutConsumerARN`` is "the ARN of a Kinesis stream consumer for the
    stream specified in streamARN", with no Glue version limit (unlike its neighbours, 4.0 or
    later), so the job's GlueVersion 5.0 has it."""
    shape = _CONSUMER_ARN.fullmatch(consumer_arn)
    if shape is None:
        return ["FANOUT_CONSUMER_ARN must be a Kinesis stream consumer's ARN "
                "(arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<name>:<timestamp>, "
                "as RegisterStreamConsumer returns it), or empty to read without enhanced "
                "fan-out"]
    if shape["stream"] != stream_arn:
        return [f"FANOUT_CONSUMER_ARN is a consumer of {shape['stream']}, not of STREAM_ARN "
                f"{stream_arn}: register the consumer on the stream the job reads"]
    return []


def window_seconds(window: str) -> float | None:
    """``"60 seconds"`` -> 60.0, ``"2 minutes"`` -> 120.0; None when it does not read so."""
    number, _, unit = window.strip().partition(" ")
    scale = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60}.get(unit.strip().lower())
    if not number.isdigit() or scale is None:
        return None
    return float(int(number) * scale)


@dataclass(frozen=True)
class StreamSettings:
    """The stream-reading job parameters (--STREAM_ARN, --STARTING_POSITION, ...).

    ``fanout_consumer_arn`` (--FANOUT_CONSUMER_ARN, empty for none) is an enhanced fan-out
    consumer of the stream the job reads through (SubscribeToShard) instead of polling the
    shards with GetRecords ("Using enhanced fan-out in Kinesis streaming jobs", AWS Glue
    Developer Guide, https://docs.aws.amazon.com/glue/latest/dg/aws-glue-programming-etl-connect-kinesis-efo.html).
    """

    stream_arn: str
    starting_position: str = "TRIM_HORIZON"
    max_fetch_records_per_shard: int = 10_000
    window_size: str = "60 seconds"
    checkpoint_location: str = ""
    fanout_consumer_arn: str = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> StreamSettings:
        def get(name: str, default: str = "") -> str:
            return (values.get(name) or "").strip() or default

        problems = []
        arn = get("STREAM_ARN")
        if not arn.startswith("arn:") or ":stream/" not in arn:
            problems.append("STREAM_ARN must be a Kinesis stream ARN")
        position = get("STARTING_POSITION", "TRIM_HORIZON").upper()
        if position not in STARTING_POSITIONS:
            problems.append("STARTING_POSITION must be TRIM_HORIZON or LATEST")
        fetch = get("MAX_FETCH_RECORDS_PER_SHARD", "10000")
        if not fetch.isdigit() or int(fetch) < 1:
            problems.append("MAX_FETCH_RECORDS_PER_SHARD must be a positive integer")
        window = get("WINDOW_SIZE", "60 seconds")
        if window_seconds(window) is None:
            problems.append("WINDOW_SIZE must read like '60 seconds' or '1 minute'")
        consumer = get("FANOUT_CONSUMER_ARN")
        if consumer:
            problems += consumer_arn_problems(consumer, arn)
        if problems:
            raise SettingsError(_PROBLEMS_PREFIX + "; ".join(problems))
        return cls(arn, position, int(fetch), window, get("CHECKPOINT_LOCATION"), consumer)

    @property
    def stream_name(self) -> str:
        return self.stream_arn.split(":stream/", 1)[1]


@dataclass(frozen=True)
class GlueJobSettings:
    """Everything the Glue job reads from its arguments, validated once.

    ``pipeline`` holds the names the Lambda consumer reads from its environment, ``stream``
    the stream-reading parameters, ``log_level`` the job's --LOG_LEVEL.
    """

    pipeline: PipelineSettings
    stream: StreamSettings
    log_level: str = "INFO"

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> GlueJobSettings:
        """Validate the job parameters; a ``SettingsError`` names every problem at once."""
        problems: list[str] = []
        pipeline = stream = None
        try:
            pipeline = PipelineSettings.from_mapping(values)
        except SettingsError as exc:
            problems.append(str(exc).removeprefix(_PROBLEMS_PREFIX))
        try:
            stream = StreamSettings.from_mapping(values)
        except SettingsError as exc:
            problems.append(str(exc).removeprefix(_PROBLEMS_PREFIX))
        if pipeline is not None and not (pipeline.staging_bucket and pipeline.copy_iam_role_arn):
            problems.append("the Glue path stages every batch in S3: STAGING_BUCKET and "
                            "COPY_IAM_ROLE_ARN are required")
        log_level = (values.get("LOG_LEVEL") or "").strip().upper() or "INFO"
        if log_level not in LOG_LEVELS:
            problems.append("LOG_LEVEL must be one of " + ", ".join(LOG_LEVELS))
        if problems or pipeline is None or stream is None:
            raise SettingsError(_PROBLEMS_PREFIX + "; ".join(problems))
        return cls(pipeline, stream, log_level)

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> GlueJobSettings:
        """From the job script's ``sys.argv``."""
        return cls.from_mapping(parse_job_arguments(argv))


def kinesis_source_options(stream: StreamSettings) -> dict[str, str]:
    """Connection options of the Glue Kinesis source, raw records (no schema inference).

    With a fan-out consumer, ``fanoutConsumerARN`` names it and the source reads through it
    ("Using enhanced fan-out in Kinesis streaming jobs": maxRecordPerRead and
    idleTimeBetweenReadsInMs no longer apply; neither is set here).
    """
    options = {
        "typeOfData": "kinesis",
        "streamARN": stream.stream_arn,
        "startingPosition": STARTING_POSITIONS[stream.starting_position],
        "maxFetchRecordsPerShard": str(stream.max_fetch_records_per_shard),
        "inferSchema": "false",
    }
    if stream.fanout_consumer_arn:
        options["fanoutConsumerARN"] = stream.fanout_consumer_arn
    return options


def for_each_batch_options(stream: StreamSettings) -> dict[str, str]:
    """``glueContext.forEachBatch`` options: the micro-batch window and the checkpoint."""
    if not stream.checkpoint_location:
        raise SettingsError(_PROBLEMS_PREFIX + "CHECKPOINT_LOCATION is required")
    return {"windowSize": stream.window_size, "checkpointLocation": stream.checkpoint_location}
