"""Event and spec factories for the tests (record builders: ``local.record_builders``)."""

import tomllib
from typing import Any

from local.record_builders import (
    BASE_TIME,
    DmsStream,
    activity,
    customer,
    encode,
    iso,
    sport_event,
    ticket,
)
from shared.spec import DEFAULT_SPEC_PATH


def spec_document() -> dict[str, Any]:
    """The shipped spec as a fresh TOML document, for tests to edit and ``parse_spec``."""
    return tomllib.loads(DEFAULT_SPEC_PATH.read_text(encoding="utf-8"))


__all__ = ["BASE_TIME", "DmsStream", "activity", "customer", "encode", "iso", "spec_document",
           "sport_event", "ticket"]
