CALL "cdc_replica"."_cdc_apply_batch"('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 0)
