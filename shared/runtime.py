"""What a Lambda function reads once per execution environment: its settings (validated once,
from the environment), the spec they name, and boto3 clients. Both functions use these, so
they are configured the same way; ``reset`` is for tests that change the environment."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3

from shared.settings import PipelineSettings
from shared.spec import PipelineSpec, load_spec


@cache
def settings() -> PipelineSettings:
    return PipelineSettings.from_mapping(os.environ)


@cache
def spec() -> PipelineSpec:
    return load_spec(settings().spec_path)


@cache
def client(name: str) -> Any:
    return boto3.client(name)  # type: ignore[call-overload]


def reset() -> None:
    settings.cache_clear()
    spec.cache_clear()
    client.cache_clear()
