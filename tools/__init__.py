"""Operator tools, each ``python -m tools.<name>``, on the same core as the consumer.

Modules: ``reconcile`` (compare the source database with the warehouse), ``dlq_replay``
(replay the dead-letter queue through the core), ``table_reload`` (repair a drifted replica
with a DMS table reload), ``spec_show`` (the spec as the warehouse holds it),
``dms_table_mappings`` (write the spec's DMS table mappings into a built template),
``cli_settings`` (the settings and spec every tool reads first).
"""
