"""The shared CDC core: one import used by the Lambda consumer and the Glue job.

Pure modules (plain data in, plain data out): ``spec`` (pipeline spec), ``decode`` (DMS
Kinesis records), ``pii``, ``order_key``, ``reduce``, ``transform`` (the whole core),
``staging`` and ``warehouse_sql`` (SQL text). The only module that talks to AWS is
``redshift_writer`` (Redshift Data API + S3).
"""
