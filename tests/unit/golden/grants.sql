GRANT USAGE ON SCHEMA "cdc_replica" TO "cdc_consumer"

GRANT USAGE ON SCHEMA "analytics" TO "cdc_consumer"

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "cdc_replica"."shop", "cdc_replica"."sale", "cdc_replica"."event_log", "analytics"."sale_wide", "cdc_replica"."_cdc_tables", "cdc_replica"."_cdc_columns", "cdc_replica"."_cdc_landing", "cdc_replica"."_cdc_applied", "cdc_replica"."_cdc_stage_shop", "cdc_replica"."_cdc_stage_sale", "cdc_replica"."_cdc_stage_event_log" TO "cdc_consumer"

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "cdc_replica" TO "cdc_consumer"

GRANT TEMP ON DATABASE "warehouse" TO "cdc_consumer"

GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA "cdc_replica" TO "cdc_consumer"

ALTER TABLE "cdc_replica"."shop" OWNER TO "cdc_consumer"

ALTER TABLE "cdc_replica"."_cdc_stage_shop" OWNER TO "cdc_consumer"

ALTER TABLE "cdc_replica"."sale" OWNER TO "cdc_consumer"

ALTER TABLE "cdc_replica"."_cdc_stage_sale" OWNER TO "cdc_consumer"

ALTER TABLE "cdc_replica"."event_log" OWNER TO "cdc_consumer"

ALTER TABLE "cdc_replica"."_cdc_stage_event_log" OWNER TO "cdc_consumer"

GRANT CREATE ON SCHEMA "cdc_replica" TO "cdc_consumer"

ALTER PROCEDURE "cdc_replica"."_cdc_apply_shop"(BOOLEAN) OWNER TO "cdc_consumer"

ALTER PROCEDURE "cdc_replica"."_cdc_apply_sale"(BOOLEAN) OWNER TO "cdc_consumer"

ALTER PROCEDURE "cdc_replica"."_cdc_apply_event_log"(BOOLEAN) OWNER TO "cdc_consumer"
