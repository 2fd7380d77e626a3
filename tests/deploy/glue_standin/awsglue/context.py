"""``GlueContext`` with the two calls the streaming job makes, as AWS Glue documents them.

- ``create_data_frame.from_options(connection_type="kinesis", connection_options=...)``: the
  Kinesis streaming source ("Kinesis connections", AWS Glue developer guide,
  https://docs.aws.amazon.com/glue/latest/dg/aws-glue-programming-etl-connect-kinesis-home.html):
  ``streamARN``, ``startingPosition`` (``latest``, ``trim_horizon`` or ``earliest``),
  ``maxFetchRecordsPerShard``, ``inferSchema``; the records come as ``data`` (binary),
  ``streamName``, ``partitionKey``, ``sequenceNumber``, ``approximateArrivalTimestamp``.
- ``forEachBatch(frame, batch_function, options)`` ("GlueContext class", forEachBatch,
  https://docs.aws.amazon.com/glue/latest/dg/aws-glue-api-crawler-pyspark-extensions-glue-context.html):
  ``windowSize`` and ``checkpointLocation`` are required; ``batch_function(data_frame,
  batch_id)`` is called once per micro-batch.

Unlike Glue, the stand-in reads the stream with boto3 on the driver (so the endpoint variables
reach moto) and returns once a micro-batch finds nothing new, so that the job ends.
"""

import boto3
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, TimestampType

KINESIS_SCHEMA = StructType([
    StructField("data", BinaryType(), nullable=False),
    StructField("streamName", StringType(), nullable=False),
    StructField("partitionKey", StringType(), nullable=False),
    StructField("sequenceNumber", StringType(), nullable=False),
    StructField("approximateArrivalTimestamp", TimestampType(), nullable=False),
])
ITERATOR_TYPES = {"trim_horizon": "TRIM_HORIZON", "earliest": "TRIM_HORIZON", "latest": "LATEST"}


class KinesisStreamingSource:
    def __init__(self, options):
        for required in ("streamARN", "startingPosition"):
            if not options.get(required):
                raise ValueError(f"Kinesis connection option {required} is required")
        position = options["startingPosition"].lower()
        if position not in ITERATOR_TYPES:
            raise ValueError(f"startingPosition {options['startingPosition']!r} is not valid")
        self.stream_arn = options["streamARN"]
        self.stream_name = self.stream_arn.rsplit("/", 1)[1]
        self.iterator_type = ITERATOR_TYPES[position]
        self.max_per_shard = int(options.get("maxFetchRecordsPerShard", "100000"))
        self.client = boto3.client("kinesis")
        self.iterators = {}

    def next_records(self):
        if not self.iterators:
            shards = self.client.list_shards(StreamName=self.stream_name)["Shards"]
            for shard in shards:
                self.iterators[shard["ShardId"]] = self.client.get_shard_iterator(
                    StreamName=self.stream_name, ShardId=shard["ShardId"],
                    ShardIteratorType=self.iterator_type)["ShardIterator"]
        records = []
        for shard_id, iterator in list(self.iterators.items()):
            taken = 0
            while iterator and taken < self.max_per_shard:
                page = self.client.get_records(ShardIterator=iterator,
                                               Limit=min(10_000, self.max_per_shard - taken))
                iterator = page.get("NextShardIterator")
                records += page["Records"]
                taken += len(page["Records"])
                if not page["Records"]:
                    break
            self.iterators[shard_id] = iterator
        return records


class DataFrameCreator:
    def __init__(self, glue_context):
        self.glue_context = glue_context

    def from_options(self, connection_type, connection_options, **_ignored):
        if connection_type != "kinesis":
            raise ValueError(f"the stand-in reads only kinesis, not {connection_type!r}")
        return KinesisStreamingSource(connection_options)


class GlueContext:
    def __init__(self, spark_context):
        self.spark_session = SparkSession(spark_context)
        self.create_data_frame = DataFrameCreator(self)

    def forEachBatch(self, frame, batch_function, options):
        for required in ("windowSize", "checkpointLocation"):
            if not options.get(required):
                raise ValueError(f"forEachBatch option {required} is required")
        batch_id = 0
        while True:
            records = frame.next_records()
            if not records:
                return
            data = pd.DataFrame({
                "data": [bytes(r["Data"]) for r in records],
                "streamName": [frame.stream_name] * len(records),
                "partitionKey": [str(r["PartitionKey"]) for r in records],
                "sequenceNumber": [str(r["SequenceNumber"]) for r in records],
                "approximateArrivalTimestamp": pd.to_datetime(
                    [r["ApproximateArrivalTimestamp"] for r in records], utc=True),
            })
            batch_function(self.spark_session.createDataFrame(data, KINESIS_SCHEMA), batch_id)
            batch_id += 1
