"""Local stand-ins for the AWS parts (no AWS account, no Docker needed), and the local jobs.

Packages: ``stack`` (PostgreSQL warehouse, the Data API stand-in and moto, as background
processes), ``redshift_data_api`` (the Redshift Data API stand-in), ``dms`` (the AWS DMS
stand-in), ``event_source_mapping`` (Lambda's Kinesis event source mapping, in-process).

Modules: ``cdc`` (``make demo``: the pipeline end to end, and ``reconcile``), ``workload``
(changes of every kind on the source database), ``source_db`` (the source tables from the
spec), ``postgres`` (a throwaway PostgreSQL 15 server), ``ports`` (free loopback ports),
``record_builders`` (synthetic DMS Kinesis records and Lambda events for tests and samples),
``sample_events`` (``make events``), ``invoke`` (``make invoke``), ``sql`` (``make sql``),
``kinesis_shards`` (reading a stream's shards: the event source mapping's and the local Glue
source's one reader), ``atomic_file`` (atomic file replacement).
"""
