CALL "cdc_replica"."_cdc_apply_pending"('3e3ec6ae40f1523720e3d1dfe39d3c90')
