"""``shared.data_api.RedshiftDataApi`` against the Data API stand-in: what its callers see when a
statement outlives its timeout."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from shared.data_api import DataApiTarget, RedshiftDataApi, StatementAborted


def test_a_statement_past_its_timeout_is_cancelled_and_raises(redshift_data: Any,
                                                              warehouse_db: str) -> None:
    # CancelStatement "cancels a running query" (Amazon Redshift Data API Reference,
    # https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_CancelStatement.html);
    # the cancelled statement ends ABORTED, and its caller retries later (``StatementAborted`` is a
    # ``WarehouseUnavailable``).
    data_api = RedshiftDataApi(
        redshift_data, DataApiTarget(database=warehouse_db, workgroup_name="local-workgroup"),
        poll_interval=(0.01, 0.05), statement_timeout=0.3)
    sql = f"SELECT pg_sleep(10) IS NULL AS slept_{uuid.uuid4().hex}"
    started = time.monotonic()
    with pytest.raises(StatementAborted, match=r"did not finish in 0\.3s; cancelled"):
        data_api.execute(sql)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while not [s for s in redshift_data.list_statements(Status="ABORTED")["Statements"]
               if s.get("QueryString") == sql]:  # a batch statement has QueryStrings
        assert time.monotonic() < deadline, "the timed-out statement was not aborted"
        time.sleep(0.05)
    assert data_api.query("SELECT 1 AS one") == [{"one": 1}]
