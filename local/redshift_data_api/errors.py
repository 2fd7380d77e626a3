"""Errors shared by the stand-in's modules."""

from __future__ import annotations


class RedshiftSqlError(Exception):
    """SQL that Redshift would reject. ``str(error)`` is Redshift-like text (``ERROR: ...``),
    which the server reports as the FAILED statement's ``Error``."""


class ApiError(Exception):
    """An error answered as HTTP 400 in botocore's JSON protocol (``__type`` + ``message``)."""

    def __init__(self, type_name: str, message: str, **fields: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.fields = fields


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def not_found(message: str, resource_id: str) -> ApiError:
    return ApiError("ResourceNotFoundException", message, ResourceId=resource_id)
