"""Run the Glue batch function on local Spark against the local stack.

    python -m glue_job.local_runner --stack-dir DIR --state-dir DIR [--once]

Each window (``--window-size``, as the job's --WINDOW_SIZE) reads the next micro-batch from
the stack's Kinesis stream (moto) with ``glue_job.kinesis_source``, hands its DataFrame to
``shared.glue.job.GlueBatchJob`` exactly as ``forEachBatch`` does on Glue (executors decode,
reduce and stage to moto S3; one transaction through the Redshift Data API stand-in; rejects
to the SQS dead-letter queue) and, after a successful batch only, checkpoints the per-shard
sequence numbers in the state dir. A restart resumes after the last applied batch; a failed
batch is read again. ``--once`` processes what the stream holds now (in as many micro-batches
as that takes, like Spark's ``Trigger.AvailableNow``) and exits. One JSON line per batch.

``--parameter NAME=VALUE`` sets a template.yaml parameter the job's arguments follow, as
the deployed job's DefaultArguments do: with ``KinesisEnhancedFanOut=true`` its
--FANOUT_CONSUMER_ARN is the stream's consumer (``ChangeStreamConsumer``, registered in moto
here if it is not yet) and the runner reads every shard through it (SubscribeToShard).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import boto3

from glue_job.kinesis_source import AppliedShardPositions, Checkpoint, LocalKinesisSource
from glue_job.local_spark import local_spark
from local.cdc import STREAM_CONSUMER_NAME
from local.stack import ensure_stack
from local.stack.provision import ensure_stream_consumer
from local.template import Evaluator, load_template
from shared.consumer import BatchOutcome
from shared.glue.arguments import GlueJobSettings, window_seconds
from shared.glue.job import GlueBatchJob, batch_log

DEFAULT_STATE_DIR = Path(".local-stack/glue")


def run(
    job: GlueBatchJob,
    source: LocalKinesisSource,
    checkpoints: AppliedShardPositions,
    *,
    once: bool,
    stop: threading.Event | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> list[BatchOutcome]:
    """Micro-batches until ``stop`` is set (or, with ``once``, until the stream is drained).

    Raises on a failed batch, after leaving the checkpoint where it was.
    """
    stop = stop or threading.Event()
    window = window_seconds(source.stream.window_size) or 0.0
    state = checkpoints.load(source.stream.stream_arn, source.stream_created())
    outcomes: list[BatchOutcome] = []
    # With once, what the stream holds now: pushed shards are read until told they are
    # caught up since this moment (polled ones until GetRecords says so).
    since = time.monotonic() if once else None
    while not stop.is_set():
        started = time.perf_counter()
        fetched = source.fetch(state.positions, since)
        if fetched.records:
            batch = source.dataframe(job.spark, fetched.records)
            outcome = job.process(batch, state.next_batch_id)
            line = batch_log(outcome, state.next_batch_id, started)
            if report is not None:
                report(line)
            if outcome.failure is not None:
                raise RuntimeError(f"batch {state.next_batch_id} failed: {outcome.failure}")
            state = Checkpoint(state.stream_arn, state.stream_created,
                               state.next_batch_id + 1, fetched.positions)
            checkpoints.commit(state)
            outcomes.append(outcome)
        elif once and fetched.caught_up:
            break
        if not once:
            stop.wait(max(0.0, window - (time.perf_counter() - started)))
    return outcomes


def job_arguments(environment: Mapping[str, str], stream_arn: str, state_dir: Path,
                  options: argparse.Namespace, fanout_consumer_arn: str = "") -> dict[str, str]:
    """The Glue job's parameters on the local stack: the consumer's settings plus the stream
    (and the fan-out consumer it reads through, if any)."""
    return {
        **environment,
        "STREAM_ARN": stream_arn,
        "STARTING_POSITION": options.starting_position,
        "MAX_FETCH_RECORDS_PER_SHARD": str(options.max_fetch_records_per_shard),
        "WINDOW_SIZE": options.window_size,
        "CHECKPOINT_LOCATION": str(state_dir),
        "FANOUT_CONSUMER_ARN": fanout_consumer_arn,
    }


def fan_out_consumer_arn(kinesis: Any, stream_arn: str,
                         parameters: Mapping[str, str] | None = None) -> str:
    """The job's --FANOUT_CONSUMER_ARN as template.yaml's GlueStreamingJob has it for its
    defaults and ``parameters``: "" (no fan-out), or the ARN of the stream's consumer
    ``STREAM_CONSUMER_NAME`` (the local ``ChangeStreamConsumer``, the one the Lambda path's
    mapping reads through too), registered in moto if it is not yet."""
    template = load_template()
    arguments = Evaluator(template, parameters).resources()["GlueStreamingJob"]["Properties"][
        "DefaultArguments"]
    value = arguments.get("--FANOUT_CONSUMER_ARN", "")
    if value == "":
        return ""
    consumer = {"Fn::GetAtt": ["ChangeStreamConsumer", "ConsumerARN"]}
    if value != consumer:
        raise ValueError(f"GlueStreamingJob's --FANOUT_CONSUMER_ARN is neither empty nor "
                         f"{consumer}: {value!r}")
    return ensure_stream_consumer(kinesis, stream_arn, STREAM_CONSUMER_NAME)


def template_parameters(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (--parameter) as template parameter overrides."""
    parameters: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--parameter takes NAME=VALUE (a template.yaml parameter), "
                             f"not {pair!r}")
        parameters[name] = value
    return parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glue_job.local_runner",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-dir", type=Path, default=Path(".local-stack/stack"),
                        help="state dir of the local stack (started if it is not running)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="where the per-shard checkpoint is kept")
    parser.add_argument("--once", action="store_true",
                        help="process what the stream holds now, then exit")
    parser.add_argument("--starting-position", choices=["TRIM_HORIZON", "LATEST"],
                        default="TRIM_HORIZON")
    parser.add_argument("--max-fetch-records-per-shard", type=int, default=10_000)
    parser.add_argument("--window-size", default="10 seconds")
    parser.add_argument("--master", default="local[2]", help="Spark master (local[N])")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="a template.yaml parameter the job's arguments follow, e.g. "
                             "KinesisEnhancedFanOut=true (repeatable)")
    options = parser.parse_args(argv)
    try:
        parameters = template_parameters(options.parameter)
    except ValueError as exc:
        parser.error(str(exc))

    info = ensure_stack(options.stack_dir)
    environment = info.environment()
    os.environ.update(environment)  # before Spark starts: its Python workers inherit it
    state_dir = options.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    kinesis = boto3.client("kinesis")
    consumer_arn = fan_out_consumer_arn(kinesis, info.resources.stream_arn, parameters)
    settings = GlueJobSettings.from_mapping(
        job_arguments(environment, info.resources.stream_arn, state_dir, options, consumer_arn))
    spark = local_spark(options.master)
    job = GlueBatchJob(spark, settings)
    source = LocalKinesisSource(kinesis, settings.stream)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()  # finish the batch in hand, then exit

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        run(job, source, AppliedShardPositions(state_dir), once=options.once, stop=stop,
            report=lambda line: print(json.dumps(line), flush=True))
    except RuntimeError as exc:
        print(f"local_runner: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
