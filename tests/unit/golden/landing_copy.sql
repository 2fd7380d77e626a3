COPY "cdc_replica"."_cdc_landing" ("batch_id", "table_name", "kind", "row_data") FROM 's3://bucket/staging/b.json' IAM_ROLE 'arn:aws:iam::1:role/copy' FORMAT AS JSON 'auto'

COPY "cdc_replica"."_cdc_landing" ("batch_id", "table_name", "kind", "row_data") FROM 's3://bucket/staging/manifests/m.manifest' IAM_ROLE 'arn:aws:iam::1:role/copy' FORMAT AS JSON 'auto' MANIFEST
