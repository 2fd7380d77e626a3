DROP TABLE IF EXISTS "cdc_replica"."_cdc_stage_shop"

CREATE TABLE "cdc_replica"."_cdc_stage_shop" (LIKE "cdc_replica"."shop")

DROP TABLE IF EXISTS "cdc_replica"."_cdc_stage_sale"

CREATE TABLE "cdc_replica"."_cdc_stage_sale" (LIKE "cdc_replica"."sale")

DROP TABLE IF EXISTS "cdc_replica"."_cdc_stage_event_log"

CREATE TABLE "cdc_replica"."_cdc_stage_event_log" (LIKE "cdc_replica"."event_log")
