"""AWS DMS table mappings generated from the pipeline spec.

DMS replicates exactly the tables its table mappings select. They come from the spec, so a
user's own spec is captured without editing the template: one ``selection`` rule with
``rule-action: include`` per spec table, in the spec's ``source_schema``, and nothing else.

Names in an ``object-locator`` are patterns, not names: ``%`` matches any run of characters,
``_`` any single character, ``[ab]`` a set ("Wildcards in table mapping", AWS DMS User Guide,
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Wildcards.html).
A rule for ``sport_event`` written as it is would also select ``sportXevent``, so every
wildcard character of a name is written as a one-character set (``[_]``), which the same page
documents as the literal character. With the spec's ``source_names = "case-insensitive"`` (the
default: Oracle and Db2 send ``TICKET``) every letter is the set of its two cases (``[tT]``),
so DMS selects exactly the tables the consumer accepts, in whatever case the source has them.

DMS processes table-mapping documents of at most 2 MB ("Specifying table selection and
transformations rules using JSON", AWS DMS User Guide); at about 150 bytes a rule that is
more than 10,000 tables, and ``table_mappings_json`` refuses a larger document.
"""

from __future__ import annotations

import json
from typing import Any

from shared.spec import PipelineSpec

DMS_TABLE_MAPPINGS_MAX_BYTES = 2 * 1024 * 1024
_WILDCARD_CHARACTERS = "%_["


class TableMappingsTooLarge(ValueError):
    """The generated table mappings exceed what DMS accepts."""


def name_pattern(name: str, case_insensitive: bool) -> str:
    """A DMS object-locator pattern that matches ``name`` and nothing else (in any case)."""

    def character(c: str) -> str:
        if c in _WILDCARD_CHARACTERS:
            return f"[{c}]"
        if case_insensitive and c.lower() != c.upper():
            return f"[{c.lower()}{c.upper()}]"
        return c

    return "".join(character(c) for c in name)


def table_mappings(spec: PipelineSpec) -> dict[str, Any]:
    """The DMS table mappings of ``spec``: one include rule per table, in spec order."""
    case_insensitive = spec.source_names == "case-insensitive"
    return {
        "rules": [
            {
                "rule-type": "selection",
                "rule-id": str(number),
                "rule-name": f"include-{table.name}",
                "object-locator": {
                    "schema-name": name_pattern(spec.source_schema, case_insensitive),
                    "table-name": name_pattern(table.name, case_insensitive),
                },
                "rule-action": "include",
            }
            for number, table in enumerate(spec.tables.values(), start=1)
        ]
    }


def table_mappings_json(mappings: dict[str, Any]) -> str:
    """Compact JSON text of ``mappings``, one rule per line (readable in a template diff)."""
    rules = ",\n".join(json.dumps(rule, separators=(", ", ": ")) for rule in mappings["rules"])
    text = '{"rules": [\n' + rules + "\n]}"
    size = len(text.encode("utf-8"))
    if size > DMS_TABLE_MAPPINGS_MAX_BYTES:
        raise TableMappingsTooLarge(
            f"the DMS table mappings are {size} bytes; DMS accepts at most "
            f"{DMS_TABLE_MAPPINGS_MAX_BYTES}: split the tables over several specs and tasks"
        )
    return text
