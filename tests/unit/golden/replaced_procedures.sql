DROP PROCEDURE IF EXISTS "cdc_replica"."_cdc_apply_batch"(VARCHAR, INTEGER, VARCHAR)

DROP PROCEDURE IF EXISTS "cdc_replica"."_cdc_apply_shop"(VARCHAR, BOOLEAN)

DROP PROCEDURE IF EXISTS "cdc_replica"."_cdc_apply_sale"(VARCHAR, BOOLEAN)

DROP PROCEDURE IF EXISTS "cdc_replica"."_cdc_apply_event_log"(VARCHAR, BOOLEAN)

DROP PROCEDURE IF EXISTS "cdc_replica"."_cdc_wide_sale_wide"(VARCHAR, BOOLEAN)
