"""A local Lambda event source mapping for Kinesis: polls a stream's shards (boto3; the moto
server locally) and invokes the function, as Lambda's Kinesis poller would.

    mapping = LocalEventSourceMapping(kinesis, "cdc-stream",
                                      "functions.kinesis_consumer.app.lambda_handler",
                                      batch_size=100, parallelization_factor=2,
                                      maximum_retry_attempts=3, on_failure=(sqs, queue_url),
                                      state_dir=Path(".state"))
    mapping.drain()              # or: mapping.poll_once(), or mapping.run(stop_event)
    mapping.close()              # stops the execution environments

Modules: ``mapping`` (``LocalEventSourceMapping``: pollers, batching, retries), ``lanes``
(which concurrent batch a record goes to, and the shard checkpoint across them), ``events``
(the Kinesis event, the function's response, the on-failure message), ``environments``
(where the function runs: in this process, or one process per execution environment),
``checkpoints`` (per shard, in files), ``context`` (the Lambda context object). Shards are
listed and read with ``local.kinesis_shards`` (shared with the local Glue Kinesis source).

What it does, like Lambda:

- A standard iterator (the stream's ARN) or an enhanced fan-out consumer (``consumer_arn``,
  a consumer's ARN as the EventSourceArn): "for standard Kinesis data streams, Lambda polls
  shards in your stream for records at a rate of once per second for each shard. For
  Kinesis enhanced fan-out, Lambda uses an HTTP/2 connection to listen for records being
  pushed from Kinesis" (same page). Polled shards keep GetRecords' 5 calls a second; a
  subscribed shard's records are pushed (``local.kinesis_shards.SubscribedShardReader``).
- One poller per shard, the shards concurrently ("How Lambda processes records from Amazon
  Kinesis Data Streams", https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html):
  ``run`` has a thread per shard, ``poll_once`` serves the shards in a thread each. A parent
  shard is finished before its children start; shards are (re)listed every
  ``shard_refresh_seconds`` and new ones get a poller.
- ``parallelization_factor`` (ParallelizationFactor, 1-10, default 1) concurrent batches per
  shard. A record goes to lane ``MD5(partition key) mod factor``, so the records of one key
  are invoked in sequence order, one batch at a time; other keys' lanes go on while one lane
  waits for a retry. The shard's checkpoint is the highest sequence number all of whose
  predecessors (in every lane) are finished, so it never passes a record in flight or
  failing. A shard reads at most two batches per lane or 1,000 records (the more of the two)
  ahead of its checkpoint.
- The event is Lambda's (``local.record_builders.kinesis_event_record`` builds each entry). A
  batch (of one lane) is sent when it holds ``batch_size`` records, when the next record
  would take the event past 6 MB (``max_payload_bytes``), or when its first record has waited
  ``batching_window_seconds``.
- ``starting_position`` TRIM_HORIZON, LATEST (the stream's end when the mapping is created)
  or AT_TIMESTAMP, for the shards that exist at creation; shards created later by resharding
  start at TRIM_HORIZON.
- ``ReportBatchItemFailures`` (``report_batch_item_failures``, on by default): the checkpoint
  moves to just before the lowest failed sequence number and the records from there on come
  again. An empty or null ``batchItemFailures`` or a null response is a success; an entry
  without ``itemIdentifier``, with an empty one or one not in the batch, or a response that
  is not a JSON object, fails the whole batch.
- A function error (an exception, a response that is not JSON serializable, a run longer
  than ``function_timeout_seconds``, or an environment that failed to start or exited) fails
  the whole batch; with ``bisect_on_error`` a batch of two or more records is split in two
  halves, retried in order (and split again if need be).
- ``maximum_retry_attempts`` (-1 infinite) and ``maximum_record_age_seconds`` (-1 infinite):
  a batch out of retries, or records too old to be sent, are given up: Lambda's failure
  record (``requestContext``, ``responseContext``, ``KinesisBatchInfo``; metadata only, no
  data) goes to the on-failure SQS queue and the shard moves on.
- Checkpoints per shard are files in ``state_dir`` (atomically replaced); a new mapping on
  the same directory, stream and function resumes after them. Delivery is at least once.
- Retries wait ``retry_backoff_seconds``.

Choices where the Lambda documentation leaves room, and differences from AWS:

- Retry counting: every re-invocation of a failed batch counts toward
  ``maximum_retry_attempts``, except that bisecting is free (both halves inherit the batch's
  count, so a poison record is isolated even with few retries), and the remainder after a
  partial failure that moved the checkpoint is a new batch with a new count (it made
  progress; a record that fails again and again makes none and uses up the count).
- After a partial failure the retried batch is exactly the failed record and those after it
  in the batch (Lambda re-reads from the checkpoint and may add newer records).
- Record age is checked before every invocation, the first included: the too-old head of a
  batch is discarded (condition ``RecordAgeExceeded``, ``approximateInvokeCount`` 0 and an
  empty ``responseContext`` if it was never invoked) and the rest is invoked. Any age from
  0 is accepted (AWS requires 60 or more) so tests need not wait a minute.
- Lambda does not document how it spreads a shard's keys over concurrent batches; the MD5
  lanes are this mapping's choice. Each lane forms its own batches (and batching window).
- The function runs where ``handler`` says (``environments``): a callable runs in the
  mapping's threads and must be thread-safe; ``"package.module.function"`` runs in execution
  environments of its own, one process each, reused, started when all are busy (at most one
  per concurrent invocation), as Lambda's are. The Kinesis consumer is run that way: its
  module keeps a processor and writer per container, and Powertools' metrics are
  process-wide.
- A timeout is detected after an in-process handler returns (it cannot be cut off); an
  environment process that runs too long is stopped and discarded.
- Only an SQS queue as on-failure destination; no tumbling windows, no event filtering; the
  failure record's ``timestamp`` is the local clock.

``sqs`` holds the other mapping, Lambda's for an SQS queue (``LocalSqsEventSourceMapping``:
batching window, ReportBatchItemFailures, messages left to the queue's visibility timeout and
redrive policy); the single applier runs behind it on the local stack (``local.cdc``). It
invokes through the same ``environments``.
"""

from local.event_source_mapping.context import LambdaContext
from local.event_source_mapping.events import MAX_PAYLOAD_BYTES
from local.event_source_mapping.mapping import (
    DEFAULT_FUNCTION_ARN,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    LocalEventSourceMapping,
    MappingCounters,
)

__all__ = [
    "DEFAULT_FUNCTION_ARN",
    "MAX_PAYLOAD_BYTES",
    "RECORD_AGE_EXCEEDED",
    "RETRY_ATTEMPTS_EXHAUSTED",
    "LambdaContext",
    "LocalEventSourceMapping",
    "MappingCounters",
]
