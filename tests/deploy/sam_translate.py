"""Translate a SAM template to plain CloudFormation JSON with aws-sam-translator.

Runs under the tool virtualenv (.venv-tools/bin/python), which has aws-sam-translator through
aws-sam-cli and cfn-lint, so the project's .venv does not need it:

    .venv-tools/bin/python tests/deploy/sam_translate.py packaged.yaml > translated.json

The template's CodeUri/ContentUri must already be S3 locations (`sam package` output): the
translator does not package local paths. No AWS call is made: the template uses no SAM policy
templates or managed policy names, so the managed-policy map is empty.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def main(argv: list[str]) -> int:
    template: dict[str, Any] = yaml_parse(Path(argv[1]).read_text())
    translated = transform(template, {}, _NoManagedPolicies())  # type: ignore[arg-type]
    json.dump(translated, sys.stdout, indent=1, sort_keys=True, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
