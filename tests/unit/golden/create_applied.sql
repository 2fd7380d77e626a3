CREATE TABLE IF NOT EXISTS "cdc_replica"."_cdc_applied" ("batch_id" VARCHAR(64) NOT NULL, "applied_at" TIMESTAMP DEFAULT GETDATE())
