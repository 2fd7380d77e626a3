"""``make sql Q="select ..."``: run one statement on the local warehouse through the Data API.

    python -m local.sql [--state-dir DIR] [--spec FILE] "SELECT ..."

Starts the local stack if it does not run (with ``--spec``, migrates its warehouse to that
pipeline spec first), then talks to the Redshift Data API stand-in with
an unmodified boto3 ``redshift-data`` client, as the consumers' database user (the stack's
consumer secret), as an analyst's tool would talk to Redshift: ExecuteStatement waiting for its
end (``shared.data_api``, the consumers' adapter: long polls, with a timeout that cancels the
statement), DescribeStatement for its row count, GetStatementResult for every page. A result
set is printed as CSV with a header (NULL as an empty field); any other statement prints the
number of rows it affected. Errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import csv
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from local.stack import DEFAULT_STATE_DIR, StackInfo, ensure_stack
from local.stack.provision import aws_client
from shared.data_api import DataApiTarget, RedshiftDataApi, WarehouseError
from shared.spec import SpecError


def field_text(field: Mapping[str, Any]) -> str:
    """One Data API field as CSV text: NULL is empty, booleans are true/false."""
    if field.get("isNull"):
        return ""
    if "booleanValue" in field:
        return "true" if field["booleanValue"] else "false"
    if "blobValue" in field:
        return base64.b64encode(field["blobValue"]).decode("ascii")
    for name in ("stringValue", "longValue", "doubleValue"):
        if name in field:
            return str(field[name])
    return ""


def run_statement(client: Any, info: StackInfo, sql: str,
                  timeout: float = 600.0) -> dict[str, Any]:
    """Submit ``sql`` and wait for it; the final DescribeStatement response. A statement that
    fails, or runs longer than ``timeout`` seconds (then cancelled), raises ``WarehouseError``
    with Redshift's error text."""
    target = DataApiTarget(database=info.database, workgroup_name=info.workgroup_name,
                           secret_arn=info.resources.consumer_secret_arn)
    data_api = RedshiftDataApi(client, target, poll_interval=(0.01, 0.5),
                               statement_timeout=timeout)
    return data_api.describe(data_api.execute(sql)["Id"])


def result_rows(client: Any, statement_id: str) -> Iterator[list[str]]:
    """The header, then every row of every result page, as CSV fields."""
    token: str | None = None
    first = True
    while True:
        kwargs: dict[str, Any] = {"Id": statement_id}
        if token:
            kwargs["NextToken"] = token
        page = client.get_statement_result(**kwargs)
        if first:
            yield [column["name"] for column in page["ColumnMetadata"]]
            first = False
        for record in page["Records"]:
            yield [field_text(field) for field in record]
        token = page.get("NextToken")
        if not token:
            return


def run_query(info: StackInfo, sql: str, out: TextIO) -> None:
    """Run ``sql`` on the stack's warehouse and write its result to ``out``."""
    client = aws_client("redshift-data", info.redshift_data_endpoint, info.region)
    described = run_statement(client, info, sql)
    if described.get("HasResultSet"):
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(result_rows(client, described["Id"]))
    else:
        out.write(f"{max(int(described.get('ResultRows', 0)), 0)}\n")


def main(argv: list[str] | None = None, prog: str = "python -m local.sql") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("query", help="one SQL statement (Redshift dialect)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="the local stack's state dir (default: %(default)s)")
    parser.add_argument("--spec", help="pipeline spec file to migrate the warehouse to first "
                                       "(default: the one the stack follows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if not args.query.strip():
        parser.error('no query; use make sql Q="SELECT ..."')
    try:
        run_query(ensure_stack(args.state_dir, args.spec), args.query, sys.stdout)
    except (WarehouseError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
