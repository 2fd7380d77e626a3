CALL "cdc_replica"."_cdc_apply_batch"('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 0, '9e1bbe83c0e724f48295d070df3949ea')
