"""Write the DMS table mappings of a pipeline spec into a built SAM template.

`scripts/sam_build.sh` runs this after `sam build`, on `.aws-sam/build/template.yaml`, the
template `sam deploy` uploads. It sets ``TableMappings`` of the DMS replication task
(``DmsMode=Instance``) and of the DMS Serverless replication config (``DmsMode=Serverless``)
to the mappings of the spec (``shared.dms_table_mappings``): every spec table, nothing else.

    python -m tools.dms_table_mappings --spec shared/specs/my.toml \
        --template .aws-sam/build/template.yaml
    python -m tools.dms_table_mappings --spec shared/specs/my.toml   # print the mappings

Why at build time: the mappings grow with the spec (two rules per table: 600 tables are
about 320 KB), too big for a template parameter (4,096 bytes) or a custom resource's
response (4,096 bytes), while a template `sam deploy` uploads to S3 may have 1 MB
("AWS CloudFormation quotas", https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html).
The template in the repository carries the mappings of the default spec, so a plain
`sam build` deploys those; tests/deploy/test_operability.py keeps them equal to the spec.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import yaml

from shared.dms_table_mappings import table_mappings, table_mappings_json
from shared.spec import load_spec

# The resources whose TableMappings come from the spec, one per DmsMode, and the custom
# resource that compares their digest with the spec the stack runs with at deploy time.
DMS_RESOURCES = ("DmsReplicationTask", "DmsReplicationConfig")
CHECK_RESOURCE = "DmsTableMappingsCheck"
TEMPLATE_MAX_BYTES = 1024 * 1024


class TemplateTooLarge(ValueError):
    """The template with the mappings exceeds CloudFormation's template size quota."""


def with_table_mappings(template: dict[str, Any], mappings_text: str) -> dict[str, Any]:
    """A copy of ``template`` whose DMS resources select what ``mappings_text`` selects."""
    resources = dict(template["Resources"])
    digest = hashlib.sha256(mappings_text.encode("utf-8")).hexdigest()
    for name, prop, value in (
        *((n, "TableMappings", mappings_text) for n in DMS_RESOURCES),
        (CHECK_RESOURCE, "TableMappingsSha256", digest),
    ):
        resource = resources[name]
        resources[name] = {**resource, "Properties": {**resource["Properties"], prop: value}}
    return {**template, "Resources": resources}


def dump_template(template: dict[str, Any]) -> str:
    text = str(yaml.safe_dump(template, sort_keys=False, width=100, allow_unicode=True))
    size = len(text.encode("utf-8"))
    if size > TEMPLATE_MAX_BYTES:
        raise TemplateTooLarge(
            f"the built template is {size} bytes with the DMS table mappings; CloudFormation "
            f"accepts at most {TEMPLATE_MAX_BYTES} (split the tables over several specs/stacks)"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, help="pipeline spec (default: the packaged spec)")
    parser.add_argument(
        "--template", type=Path, help="built SAM template to update in place (long-form YAML)"
    )
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    text = table_mappings_json(table_mappings(spec))
    if args.template is None:
        print(text)
        return 0
    try:
        template: dict[str, Any] = yaml.safe_load(args.template.read_text(encoding="utf-8"))
    except yaml.constructor.ConstructorError as exc:
        parser.error(f"{args.template}: not a built template (short-form tags?): {exc}")
    args.template.write_text(dump_template(with_table_mappings(template, text)), encoding="utf-8")
    print(
        f"dms_table_mappings: {len(spec.tables)} tables of spec {spec.name!r} "
        f"(schema {spec.source_schema!r}) -> {', '.join(DMS_RESOURCES)} in {args.template}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
