"""The Glue streaming consumer: the job script (``cdc_streaming_job.py``, the only file that
imports ``awsglue``) and, for local runs, a Kinesis reader and runner. The batch logic is
``shared.glue_batch`` (it ships to Glue in the ``shared`` zip)."""
