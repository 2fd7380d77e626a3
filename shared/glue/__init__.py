"""The Glue streaming path: one micro-batch DataFrame, processed by Spark's executors.

The job script (``glue_job/cdc_streaming_job.py``) parses its arguments and hands them to
``job.run_streaming_job``; ``job.GlueBatchJob`` is the ``forEachBatch`` function. It takes the
DataFrame the Glue Kinesis source hands ``forEachBatch`` (columns ``data``, ``streamName``,
``partitionKey``, ``sequenceNumber``, ``approximateArrivalTimestamp``) and applies the same
core as the Lambda path, distributed:

1. **decode** (executors): every record goes through the very same
   ``shared.decode.RecordDecoder`` (decoding rules, validation, PII functions, order keys),
   built once per executor process from a broadcast of the spec and the HMAC key; each record
   becomes rows of (kind, table, key, order key, sequence number, staged JSON line, reject
   fields), cached in the executors for the steps below.
2. **summary** (the driver receives a few rows): counts per kind/table/reason, newest commit.
3. **reduce** (executors): the newest change per (table, key), the Lambda rule: the larger
   order key wins, on a tie the later record in the stream. Partial aggregation, no sort.
4. **stage** (executors): each partition writes its rows to S3 as landing rows of the batch
   (``shared.landing.landing_line``), one object; the driver receives only the object keys.
5. **merge** (driver): ONE transaction through the Data API: one COPY of the batch's S3 prefix
   into the landing table, then the one apply call (``RedshiftWriter.merge_staged``, the
   procedures of ``shared.apply_procedures``); the staged objects are deleted afterwards.
6. **dead letters** (executors): rejects go to the same SQS queue, in the same message format
   (``shared.dead_letter``), after the warehouse write, as on the Lambda path.

The batch's rows never reach the driver. A failure (warehouse or dead-letter queue
unavailable) is reported in the outcome; ``GlueBatchJob.__call__`` raises it, so Glue retries
the batch and the checkpoint does not move past it. Every write is idempotent and
order-guarded, so a retried batch applies nothing twice.

Modules:

- ``arguments``: the job's ``--NAME value`` arguments, parsed once into ``GlueJobSettings``
  (the Lambda's settings plus ``StreamSettings``), and the Glue API options they decide.
- ``executors``: what runs in the executors: their per-process state (``executor_state``
  over the broadcast ``ExecutorConfig``) and the ``mapInPandas``/``applyInPandas``
  functions (decode, keep-when-null reduction, stage to S3, send rejects).
- ``steps``: the DataFrame steps: ``decode_batch``, ``newest_changes``, ``summarize``,
  ``table_events``.
- ``job``: ``GlueBatchJob`` (the steps strung together with the writes), ``batch_log`` (the
  line per batch) and ``run_streaming_job`` (the job script's body).

Importable without ``awsglue``: only the entry script touches the Glue API. This package
ships in the ``shared`` zip (``--extra-py-files``), which is why it lives here and not next
to the script.
"""
