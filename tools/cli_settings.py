"""What every tool reads first: the consumer's settings from the environment and the spec.

The tools run with the consumer's variables (``shared.settings``: the Lambda's names), so they
reach the same warehouse, queue and key; ``--spec`` overrides ``PIPELINE_SPEC_PATH``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from shared.settings import PipelineSettings
from shared.spec import PipelineSpec, load_spec


def add_spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", help="pipeline spec file (default: PIPELINE_SPEC_PATH or the "
                                       "packaged spec)")


def settings_and_spec(spec_path: str | None, overrides: Mapping[str, str] | None = None,
                      ) -> tuple[PipelineSettings, PipelineSpec]:
    environment = {**os.environ, **(overrides or {})}
    if spec_path:
        environment["PIPELINE_SPEC_PATH"] = spec_path
    settings = PipelineSettings.from_mapping(environment)
    return settings, load_spec(settings.spec_path)
