CREATE TABLE IF NOT EXISTS "cdc_replica"."shop" ("shop_id" BIGINT NOT NULL, "name" VARCHAR(64), "opened" DATE, "_cdc_order_key" VARCHAR(142) NOT NULL, "_cdc_deleted" BOOLEAN NOT NULL, PRIMARY KEY ("shop_id")) DISTKEY("shop_id") SORTKEY("shop_id")

CREATE TABLE IF NOT EXISTS "cdc_replica"."sale" ("shop_id" BIGINT NOT NULL, "sale_no" INTEGER NOT NULL, "amount" DECIMAL(12,2), "note" VARCHAR(65535), "doc" SUPER, "blob" VARBYTE(16), "at" TIMESTAMPTZ, "_cdc_order_key" VARCHAR(142) NOT NULL, "_cdc_deleted" BOOLEAN NOT NULL, PRIMARY KEY ("shop_id", "sale_no")) DISTKEY("shop_id") SORTKEY("shop_id", "sale_no")

CREATE TABLE IF NOT EXISTS "cdc_replica"."event_log" ("actor" VARCHAR(32), "action" VARCHAR(32), "_cdc_order_key" VARCHAR(142) NOT NULL, "_cdc_deleted" BOOLEAN NOT NULL, "_cdc_change_id" VARCHAR(128) NOT NULL, PRIMARY KEY ("_cdc_order_key", "_cdc_change_id")) DISTKEY("_cdc_order_key") SORTKEY("_cdc_order_key", "_cdc_change_id")
