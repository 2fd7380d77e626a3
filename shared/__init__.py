"""The shared CDC core: one import used by the Lambda consumer and the Glue job.

Pure modules (plain data in, plain data out, no I/O):

- ``spec``: the pipeline spec (TOML) loaded into typed, validated objects (format:
  ``docs/spec.md``); ``specs/`` holds the shipped spec.
- ``records``: the plain data types that flow through the core (changes, rejects, events).
- ``row_types``: one msgspec Struct per source table, built from the spec.
- ``decode``: DMS Kinesis records into typed, validated, PII-applied changes.
- ``pii``: tokenize, mask, redact (and opt-in plain SHA-256).
- ``order_key``: which of two changes of a row is newer (``is_newer`` in Python, ``newer_sql``
  in Redshift).
- ``schema_evolution``: source columns added after the spec was written.
- ``transform``: the whole core for one batch (decode, validate, PII, newest change per key).
- ``settings``: the consumer's configuration, validated once.
- ``batch_log``: the per-batch log fields, the same on both consumers.
- ``warehouse_sql``: the SQL text of the schema DDL and of the statements that apply a batch
  (stage, MERGE, truncates, wide-table recomputation).
- ``apply_procedures``: the landing table and the stored procedures that apply every pending
  landed batch in one call (``docs/warehouse-apply.md``).
- ``warehouse_grants``: the consumers' database user and its grants (SQL builders).
- ``staging``: SQL literals and the JSON of a change's typed row.
- ``landing``: a batch as landing rows: one INSERT, or JSON lines for one COPY, within the Data
  API's limits.
- ``dms_table_mappings``: AWS DMS table mappings generated from the spec.

Edges (they do I/O):

- ``data_api``: the Redshift Data API adapter (submit, wait, retry); the only caller of
  ``redshift-data``.
- ``redshift_writer``: one reduced batch into Redshift: land it and apply it inline, or hand
  it to the applier (S3 + its queue); the applier's apply of landed batches (Data API + S3).
- ``applier``: the single applier's core: the queue adapter, its messages, applying them with
  bisection so a bad batch fails alone.
- ``migrations``: create and migrate the warehouse schema from the spec, idempotently (the
  plan, ``plan_migration``, is pure).
- ``dead_letter``: rejected records, with their reason and payload, to the SQS queue.
- ``consumer``: one consumer batch end to end (transform, write, dead-letter the rejects).
- ``glue``: the Glue streaming path, one micro-batch DataFrame on Spark's executors (a package:
  job arguments, executor functions, DataFrame steps, the job).
"""
