UPDATE "cdc_replica"."_cdc_tables" SET load_started = '2024-01-01T00:00:00.000000Z' WHERE table_name = 'shop'

INSERT INTO "cdc_replica"."_cdc_tables" (table_name, load_started) SELECT 'shop', '2024-01-01T00:00:00.000000Z' WHERE NOT EXISTS (SELECT 1 FROM "cdc_replica"."_cdc_tables" WHERE table_name = 'shop')

SELECT COUNT(*) AS n FROM "cdc_replica"."shop" WHERE NOT "cdc_replica"."shop"."_cdc_deleted" AND SUBSTRING("cdc_replica"."shop"."_cdc_order_key", 2, 27) < '2024-01-01T00:00:00.000000Z'

LOCK "cdc_replica"."_cdc_landing"

UPDATE "cdc_replica"."shop" SET "name" = NULL, "opened" = NULL, "_cdc_deleted" = TRUE, "_cdc_order_key" = '02024-01-01T00:00:00.000000Z000000000000000000000000000000000000000000000000000000' WHERE NOT "cdc_replica"."shop"."_cdc_deleted" AND SUBSTRING("cdc_replica"."shop"."_cdc_order_key", 2, 27) < '2024-01-01T00:00:00.000000Z'

CREATE TEMP TABLE "wide_rows_sale_wide" AS SELECT "sale"."shop_id" AS "shop_id", "sale"."sale_no" AS "sale_no", "sale"."amount" AS "amount", "shop"."name" AS "shop_name" FROM "cdc_replica"."sale" "sale" LEFT JOIN "cdc_replica"."shop" "shop" ON "sale"."shop_id" = "shop"."shop_id" AND NOT "shop"."_cdc_deleted" WHERE NOT "sale"."_cdc_deleted"

MERGE INTO "analytics"."sale_wide" USING "wide_rows_sale_wide" s ON "analytics"."sale_wide"."shop_id" = s."shop_id" AND "analytics"."sale_wide"."sale_no" = s."sale_no" WHEN MATCHED THEN UPDATE SET "amount" = s."amount", "shop_name" = s."shop_name" WHEN NOT MATCHED THEN INSERT ("shop_id", "sale_no", "amount", "shop_name") VALUES (s."shop_id", s."sale_no", s."amount", s."shop_name")

DELETE FROM "analytics"."sale_wide" WHERE NOT EXISTS (SELECT 1 FROM "cdc_replica"."sale" f WHERE f."shop_id" = "analytics"."sale_wide"."shop_id" AND f."sale_no" = "analytics"."sale_wide"."sale_no" AND NOT f."_cdc_deleted")
