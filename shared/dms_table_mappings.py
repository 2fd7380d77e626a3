"""AWS DMS table mappings generated from the pipeline spec.

DMS replicates exactly the tables its table mappings select. They come from the spec, so a
user's own spec is captured without editing the template: one ``selection`` rule with
``rule-action: include`` per spec table, in the spec's ``source_schema``, and nothing else;
then one ``object-mapping`` rule per spec table that partitions its records by primary key.

Partitioning. Without an object mapping DMS sends a table's CDC records with
``partition-key-type`` ``schema-table`` (published captures: crate/commons-codec,
tests/transform/test_aws_dms.py), so every change of a table goes to ONE Kinesis shard, which
takes at most 1,000 records or 1 MiB a second ("Quotas and limits", Amazon Kinesis Data
Streams Developer Guide): a busy table could never go faster, however many shards the stream
has. "Using object mapping to migrate data to a Kinesis data stream" (AWS DMS User Guide,
"Using Amazon Kinesis Data Streams as a target",
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.Kinesis.html#CHAP_Target.Kinesis.ObjectMapping)
lists ``primary-key`` among the ``partition-key-type`` values of an object-mapping rule's
``mapping-parameters``; with the endpoint's ``PartitionIncludeSchemaTable`` (template.yaml)
DMS "prefixes schema and table names to partition values" so equal keys of different tables
spread too, and with ``IncludePartitionValue`` the value is in each record's metadata
(``"partition-key-value": "public.customer.1"``). Every change of one row then goes to one
shard, in order, and a table's rows spread over all shards. The consumer never relied on a
table's changes sharing a shard: it orders every change by its source position.

The rule's action is ``map-record-to-record``, which the same page says DMS uses "when
migrating from a relational database" and which "creates an attribute for each column in the
source database", every column not listed in ``exclude-columns``. The rules list no
``exclude-columns`` and no ``attribute-mappings``, so the columns DMS sends stay every source
column, and the record stays DMS's ``data`` / ``metadata`` (and ``before-image``) message,
as a published capture of a DMS task partitioning by primary key shows
(yhyyz/kafka-cdc-redshift, README.md: an ``update`` with ``"partition-key-type":
"primary-key"``, ``"partition-key-value": "test_db.product.2"``).

Names in an ``object-locator`` are patterns, not names: ``%`` matches any run of characters,
``_`` any single character, ``[ab]`` a set ("Wildcards in table mapping", AWS DMS User Guide,
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Wildcards.html).
A rule for ``sport_event`` written as it is would also select ``sportXevent``, so every
wildcard character of a name is written as a one-character set (``[_]``), which the same page
documents as the literal character. With the spec's ``source_names = "case-insensitive"`` (the
default: Oracle and Db2 send ``TICKET``) every letter is the set of its two cases (``[tT]``),
so DMS selects exactly the tables the consumer accepts, in whatever case the source has them.

The object-mapping rules locate their table with the same exact patterns as the selection
rules (an object-locator's names are patterns in every rule type), so each spec table gets
exactly its own rule and no other table is touched.

DMS processes table-mapping documents of at most 2 MB ("Specifying table selection and
transformations rules using JSON", AWS DMS User Guide); a table's two rules take about 550
bytes (case-insensitive patterns of 10-character names), so that is some 3,800 tables, and
``table_mappings_json`` refuses a larger document.
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


PARTITION_KEY_TYPE = "primary-key"


def table_mappings(spec: PipelineSpec) -> dict[str, Any]:
    """The DMS table mappings of ``spec``: one include rule per table, in spec order, then one
    object-mapping rule per table that partitions its records by primary key."""
    case_insensitive = spec.source_names == "case-insensitive"
    locators = [
        (
            table.name,
            {
                "schema-name": name_pattern(spec.source_schema, case_insensitive),
                "table-name": name_pattern(table.name, case_insensitive),
            },
        )
        for table in spec.tables.values()
    ]
    selections = [
        {
            "rule-type": "selection",
            "rule-id": str(number),
            "rule-name": f"include-{name}",
            "object-locator": locator,
            "rule-action": "include",
        }
        for number, (name, locator) in enumerate(locators, start=1)
    ]
    mappings = [
        {
            "rule-type": "object-mapping",
            "rule-id": str(number),
            "rule-name": f"partition-{name}",
            "rule-action": "map-record-to-record",
            "object-locator": dict(locator),
            "mapping-parameters": {"partition-key-type": PARTITION_KEY_TYPE},
        }
        for number, (name, locator) in enumerate(locators, start=len(locators) + 1)
    ]
    return {"rules": selections + mappings}


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
