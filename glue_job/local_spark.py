"""A local SparkSession shaped like the Glue job's (Spark 3.5, Python workers, Arrow)."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def local_spark(master: str = "local[2]", shuffle_partitions: int = 4) -> SparkSession:
    """The process's SparkSession (created once): small shuffle, no UI, quiet logs.

    The Python workers run this interpreter (``PYSPARK_PYTHON``), so they see the same
    packages as the driver, as Glue's executors see the job's modules.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(master)
        .appName("cdc-glue-local")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark
