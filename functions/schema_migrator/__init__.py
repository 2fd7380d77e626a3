"""The schema migrator Lambda: ``app`` (the CloudFormation custom resource over
``shared.migrations``)."""
