"""DMS Kinesis records as AWS DMS writes them (``json`` format, transaction details, partition
value, before images), for the demo, the sample events and the tests.

``DmsStream`` hands out strictly increasing commit timestamps, stream positions and Kinesis
sequence numbers, so a sequence of calls reads like the source history it describes. The row
helpers build rows of the reference (sports ticketing) schema.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from shared.records import StreamRecord

BASE_TIME = datetime(2021, 8, 15, 10, 0, 0, tzinfo=UTC)


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(message: dict[str, Any] | bytes | str, sequence_number: str) -> StreamRecord:
    """A stream record as Lambda hands it over (base64 text)."""
    raw = message if isinstance(message, bytes) else (
        message.encode() if isinstance(message, str) else msgspec.json.encode(message)
    )
    return StreamRecord(base64.b64encode(raw).decode("ascii"), sequence_number, "pk", "shardId-0")


@dataclass
class DmsStream:
    """Builds DMS records for the ``public`` schema in source-commit order."""

    schema: str = "public"
    clock: datetime = BASE_TIME
    lsn: int = 0x2_7C00_0000
    sequence: int = 49_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    transaction_id: int = 1000
    records: list[StreamRecord] = field(default_factory=list)

    def _next_seq(self) -> str:
        self.sequence += 1
        return str(self.sequence)

    def message(
        self,
        table: str,
        operation: str,
        data: dict[str, Any],
        *,
        before: dict[str, Any] | None = None,
        details: bool = True,
        record_id: int = 1,
    ) -> dict[str, Any]:
        self.clock += timedelta(milliseconds=10)
        metadata: dict[str, Any] = {
            "timestamp": iso(self.clock + timedelta(milliseconds=3)),
            "record-type": "data",
            "operation": operation,
            "partition-key-type": "primary-key",
            "partition-key-value": f"{self.schema}.{table}.{next(iter(data.values()))}",
            "schema-name": self.schema,
            "table-name": table,
        }
        if operation != "load" and details:
            self.lsn += 0x100
            self.transaction_id += 1
            position = f"{self.lsn >> 32:08X}/{self.lsn & 0xFFFFFFFF:08X}"
            metadata.update({
                "commit-timestamp": iso(self.clock),
                "stream-position": f"{position}.{record_id}.{position}",
                "transaction-id": self.transaction_id,
                "transaction-record-id": record_id,
                "prev-transaction-id": self.transaction_id - 1,
                "prev-transaction-record-id": 1,
            })
        message: dict[str, Any] = {"data": data, "metadata": metadata}
        if before is not None:
            message["before-image"] = before
        return message

    def add(self, table: str, operation: str, data: dict[str, Any], **kwargs: Any) -> StreamRecord:
        record = encode(self.message(table, operation, data, **kwargs), self._next_seq())
        self.records.append(record)
        return record

    def add_raw(self, raw: dict[str, Any] | bytes | str) -> StreamRecord:
        record = encode(raw, self._next_seq())
        self.records.append(record)
        return record

    def control(self, operation: str, table: str = "ticket_activity", *, details: bool = False,
                columns: dict[str, Any] | None = None,
                partition_key_value: str = "serv-res-id-1") -> StreamRecord:
        """A control record; ``details`` adds the transaction details a CDC record has."""
        self.clock += timedelta(milliseconds=10)
        metadata: dict[str, Any] = {
            "timestamp": iso(self.clock), "record-type": "control", "operation": operation,
            "partition-key-type": "task-id", "partition-key-value": partition_key_value,
            "schema-name": self.schema, "table-name": table}
        if details:
            self.lsn += 0x100
            self.transaction_id += 1
            position = f"{self.lsn >> 32:08X}/{self.lsn & 0xFFFFFFFF:08X}"
            metadata.update({
                "commit-timestamp": iso(self.clock), "stream-position": f"{position}.2.{position}",
                "transaction-id": self.transaction_id, "transaction-record-id": 1})
        return self.add_raw({
            "control": {"table-def": {"columns": columns or {}, "primary-key": []}},
            "metadata": metadata,
        })

    def take(self) -> list[StreamRecord]:
        """The records added since the last take (one consumer batch)."""
        batch, self.records = self.records, []
        return batch


def customer(customer_id: int, name: str = "Teresa Stein", email: str | None = None,
             phone: str | None = "+1-296-605-8486") -> dict[str, Any]:
    return {"customer_id": customer_id, "name": name,
            "email": email if email is not None else f"user{customer_id}@example.com",
            "phone": phone}


def sport_event(event_id: int, sport_type: str = "Baseball", start_date: str = "2021-09-01",
                location: str = "Seattle, US") -> dict[str, Any]:
    return {"event_id": event_id, "sport_type": sport_type, "start_date": start_date,
            "location": location}


def ticket(ticket_id: int, event_id: int, seat_level: str = "Standard",
           seat_location: str = "S-1", ticket_price: Any = 100) -> dict[str, Any]:
    return {"ticket_id": ticket_id, "event_id": event_id, "seat_level": seat_level,
            "seat_location": seat_location, "ticket_price": ticket_price}


def activity(ticket_id: int, purchased_by: int, created_at: str = "2021-08-15 10:00:00",
             updated_at: str | None = None) -> dict[str, Any]:
    return {"ticket_id": ticket_id, "purchased_by": purchased_by, "created_at": created_at,
            "updated_at": updated_at or created_at}


STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/cdc-stream"
INVOKE_IDENTITY_ARN = "arn:aws:iam::123456789012:role/cdc-consumer"


def kinesis_event_record(
    *, data: str, partition_key: str, sequence_number: str, shard_id: str, arrival: float,
    stream_arn: str = STREAM_ARN, invoke_identity_arn: str = INVOKE_IDENTITY_ARN,
) -> dict[str, Any]:
    """One entry of a Lambda Kinesis event's ``Records``: ``data`` is base64 text, ``arrival``
    the approximate arrival time in epoch seconds. Shared with ``local.event_source_mapping``."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": data,
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": stream_arn.split(":")[3],
        "eventSourceARN": stream_arn,
    }


def lambda_event(records: list[StreamRecord], stream_arn: str = STREAM_ARN,
                 arrival: datetime = BASE_TIME) -> dict[str, Any]:
    """A Kinesis event exactly as Lambda's event source mapping delivers a batch."""
    return {"Records": [
        kinesis_event_record(
            data=record.data if isinstance(record.data, str)
            else base64.b64encode(bytes(record.data)).decode("ascii"),
            partition_key=record.partition_key,
            sequence_number=record.sequence_number,
            shard_id=record.shard_id or "shardId-000000000000",
            arrival=arrival.timestamp(),
            stream_arn=stream_arn,
        )
        for record in records
    ]}
