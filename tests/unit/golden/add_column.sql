ALTER TABLE "cdc_replica"."shop" ADD COLUMN "city" VARCHAR(32)

ALTER TABLE "cdc_replica"."_cdc_stage_shop" ADD COLUMN "city" VARCHAR(32)

INSERT INTO "cdc_replica"."_cdc_columns" (table_name, column_name, column_type, added_key) VALUES ('shop', 'city', 'varchar(32)', '22024-01-01T00:00:00.000000ZP00000002/7C007178000000000000000000000000000000000000')
