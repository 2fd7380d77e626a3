"""Show the pipeline spec as the warehouse holds it: each table's columns, with the source
columns schema evolution added (``shared.schema_evolution``) and which of those land
redacted until the spec gives them a PII rule.

    python -m tools.spec_show [--spec FILE]
"""

from __future__ import annotations

import argparse
import sys

import boto3

from shared.data_api import RedshiftDataApi
from shared.redshift_writer import RedshiftWriter
from shared.spec import PipelineSpec
from tools.cli_settings import add_spec_argument, settings_and_spec


def describe(spec: PipelineSpec, evolved: PipelineSpec) -> list[str]:
    """One line per table, then one per added column (plain data in, text out)."""
    lines = []
    for name, table in evolved.tables.items():
        own = spec.tables[name].column_names
        lines.append(f"{name} (key {', '.join(table.key)}): {', '.join(own)}")
        for column in table.columns:
            if column.name not in own:
                note = "  redacted: name looks personal; give it a rule in [pii]" \
                    if column.pii == "redact" else ""
                lines.append(f"  + {column.name} {column.type} (added by the source){note}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_argument(parser)
    args = parser.parse_args(argv)
    settings, spec = settings_and_spec(args.spec)
    writer = RedshiftWriter(spec, RedshiftDataApi(boto3.client("redshift-data"), settings.target))
    print("\n".join(describe(spec, writer.load_added_columns())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
