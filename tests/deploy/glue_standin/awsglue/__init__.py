"""A minimal stand-in for AWS Glue's ``awsglue`` library: ``GlueContext`` and ``forEachBatch``.

Only for the deploy tests' run of the job script as deployed (spark-submit, the job script and
the ``--extra-py-files`` zip): everything else the job imports is real. Glue's own library exists
only on Glue.
"""
