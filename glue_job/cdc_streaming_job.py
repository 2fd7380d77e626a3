"""AWS Glue 5.0 streaming job: Kinesis (DMS changes) -> shared core on Spark -> Redshift.

Everything but the Glue API calls lives in ``shared.glue_batch`` (shipped with
--extra-py-files), so it is importable and tested without ``awsglue``.
"""

import logging
import sys

from awsglue.context import GlueContext
from pyspark.context import SparkContext

from shared.glue_batch import (
    GlueBatchJob,
    StreamSettings,
    for_each_batch_options,
    kinesis_source_options,
    parse_job_arguments,
)

logging.basicConfig(level=logging.INFO, format="%(message)s")
args = parse_job_arguments(sys.argv)
logging.getLogger("cdc.glue").setLevel(args.get("LOG_LEVEL") or "INFO")
stream = StreamSettings.from_mapping(args)
glue_context = GlueContext(SparkContext.getOrCreate())
job = GlueBatchJob.from_arguments(args, glue_context.spark_session)
records = glue_context.create_data_frame.from_options(
    connection_type="kinesis", connection_options=kinesis_source_options(stream))
glue_context.forEachBatch(frame=records, batch_function=job,
                          options=for_each_batch_options(stream))
