LOCK "cdc_replica"."shop", "cdc_replica"."sale", "cdc_replica"."event_log", "analytics"."sale_wide"
