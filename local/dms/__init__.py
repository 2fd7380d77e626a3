"""A local stand-in for AWS DMS (PostgreSQL source, Kinesis target, full load and CDC).

It reads the source's changes through logical decoding (wal2json) and writes records to a
Kinesis stream exactly as DMS does with the template's settings, so the consumer meets the
same records locally as on AWS.

    python -m local.dms run --source-dsn DSN --stream cdc-stream --state-dir DIR
    python -m local.dms reload --state-dir DIR --table T     # DMS's ReloadTables

Modules: ``capture`` (the task: slot, full load, CDC, DDL capture, reloads), ``records``
(DMS's record shapes, with their sources), ``wal2json`` (decoding output), ``kinesis``
(PutRecords), ``state`` (what survives a restart), ``requests`` (request files: reloads, and
the skip-a-transaction test device).
"""

from local.dms.capture import DEFAULT_SLOT, DmsCounters, LocalDms
from local.dms.requests import request_reload, request_skip

__all__ = ["DEFAULT_SLOT", "DmsCounters", "LocalDms", "request_reload", "request_skip"]
