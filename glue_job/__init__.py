"""The Glue streaming consumer. The batch logic is the ``shared.glue`` package (it ships to
Glue in the ``shared`` zip).

Modules: ``cdc_streaming_job`` (the job script, the only file that imports ``awsglue``) and,
for local runs, ``kinesis_source`` (a Kinesis reader with per-shard checkpoints standing in
for Glue's Kinesis source), ``local_spark`` (a SparkSession shaped like the job's) and
``local_runner`` (the batch function on local Spark against the local stack).
"""
