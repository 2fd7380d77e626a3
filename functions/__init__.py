"""The Lambda functions, each a thin edge over ``shared``: ``kinesis_consumer`` (the Kinesis
consumer, ``app.lambda_handler``) and ``schema_migrator`` (the CloudFormation custom resource
that creates and migrates the warehouse schema on deploy).
"""
