"""AWS Glue 5.0 streaming job: Kinesis (DMS changes) -> shared core on Spark -> Redshift.

Everything but the Glue API import lives in ``shared.glue`` (shipped with --extra-py-files),
so it is importable and tested without ``awsglue``.
"""

import sys

from awsglue.context import GlueContext
from pyspark.context import SparkContext

from shared.glue.arguments import GlueJobSettings
from shared.glue.job import run_streaming_job

settings = GlueJobSettings.from_argv(sys.argv)
run_streaming_job(settings, lambda: GlueContext(SparkContext.getOrCreate()))
