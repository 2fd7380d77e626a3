"""Event factories for the tests (the builders live in ``local.dms_records``)."""

from local.dms_records import (
    BASE_TIME,
    DmsStream,
    activity,
    customer,
    encode,
    iso,
    sport_event,
    ticket,
)

__all__ = ["BASE_TIME", "DmsStream", "activity", "customer", "encode", "iso", "sport_event",
           "ticket"]
