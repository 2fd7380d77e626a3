SELECT table_name, column_name, column_type FROM "cdc_replica"."_cdc_columns" ORDER BY table_name, added_key, column_name

SELECT table_name, load_started FROM "cdc_replica"."_cdc_tables" WHERE load_started IS NOT NULL

LOCK "cdc_replica"."_cdc_columns"

SELECT 1 / (CASE WHEN COUNT(*) = 2 THEN 1 ELSE 0 END) FROM "cdc_replica"."_cdc_columns"

DELETE FROM "cdc_replica"."_cdc_landing" WHERE batch_id = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
