"""A local stand-in for AWS DMS (PostgreSQL source, Kinesis target, full load and CDC).

It reads the source's changes through logical decoding (wal2json) and writes records to a
Kinesis stream exactly as DMS does with the template's settings, so the consumer meets the
same records locally as on AWS.

    python -m local.dms run --source-dsn DSN --stream cdc-stream --state-dir DIR
"""

from local.dms.capture import DEFAULT_SLOT, DmsCounters, LocalDms

__all__ = ["DEFAULT_SLOT", "DmsCounters", "LocalDms"]
