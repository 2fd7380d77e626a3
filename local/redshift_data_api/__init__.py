"""A local stand-in for the Amazon Redshift Data API, backed by PostgreSQL 15.

An unmodified boto3 ``redshift-data`` client talks to :class:`~.server.RedshiftDataApiServer`
with only ``endpoint_url`` changed. Statements run asynchronously on PostgreSQL connections
configured like Redshift sessions, after a Redshift grammar check (:mod:`.grammar`) and a
translation of Redshift-only syntax; ``COPY`` loads from an S3-compatible endpoint.

Modules: ``server`` (HTTP), ``operations`` (request/response shapes), ``statements``
(lifecycle, workers, sessions), ``auth`` (SecretArn / DbUser / IAM identity to a database
user), ``catalog`` (ListDatabases, ListSchemas, ListTables, DescribeTable), ``executor``
(PostgreSQL execution and result typing),
``grammar`` (the Redshift grammar check) / ``translate`` / ``lexer`` (SQL), ``parameters``,
``s3_copy`` / ``copy_parse`` / ``copy_formats`` (COPY), ``errors`` (errors the modules
share), ``__main__`` (command line).
"""
