LOCK "cdc_replica"."_cdc_landing"
