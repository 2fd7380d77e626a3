#!/usr/bin/env python3
"""Write the sample events (``make events``): events/<name>.json, reproducibly.

    python scripts/make_events.py [--out DIR]

The Kinesis events and the order to apply them in are described in local/sample_events.py and
events/README.md; ``applier/landed_batches.json`` is the batch applier's SQS event
(``applier_event``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from local.sample_events import EVENTS_DIR, render, write_events
from shared.applier import landed_message

APPLIER_EVENT = Path("applier/landed_batches.json")
APPLIER_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:cdc-applier"


def applier_event(staging_prefix: str = "staging/") -> dict[str, Any]:
    """Two landed-batch messages as the applier queue's SQS event source mapping delivers them
    ("Using Lambda with Amazon SQS", AWS Lambda Developer Guide: an event's ``Records``), with
    fixed batch ids, message ids and times; the keys are the consumers' landing objects under
    ``staging_prefix`` (the StagingPrefix default), and each batch's newest source commit per
    table (DMS's ``commit-timestamp`` as the transform renders it) is shortly before the send."""
    records = []
    for n in (1, 2):
        batch_id = hashlib.sha256(f"sample batch {n}".encode()).hexdigest()[:32]
        commits = {table: f"2021-08-15T09:59:{40 + 4 * n + i}.000000Z"
                   for i, table in enumerate(("customer", "ticket", "ticket_activity"))}
        body = landed_message(batch_id, f"{staging_prefix.strip('/')}/{batch_id}.json", commits)
        records.append({
            "messageId": f"00000000-0000-4000-8000-{n:012d}",
            "receiptHandle": f"AQEBsample{n:04d}",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": str(1629021600000 + n),
                "SenderId": "AROAEXAMPLEKINESISCONSUMER:cdc-kinesis-consumer",
                "ApproximateFirstReceiveTimestamp": str(1629021600100 + n),
            },
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 (SQS's digest)
            "eventSource": "aws:sqs",
            "eventSourceARN": APPLIER_QUEUE_ARN,
            "awsRegion": "us-east-1",
        })
    return {"Records": records}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=EVENTS_DIR, help=f"default: {EVENTS_DIR}")
    args = parser.parse_args(argv)
    for path in write_events(args.out):
        print(path)
    applier = args.out / APPLIER_EVENT
    applier.parent.mkdir(parents=True, exist_ok=True)
    applier.write_text(render(applier_event()), encoding="utf-8")
    print(applier)
    return 0


if __name__ == "__main__":
    sys.exit(main())
