CALL "cdc_replica"."_cdc_apply_pending"('b789099e6f1aa6b545c344bfeee75520')
