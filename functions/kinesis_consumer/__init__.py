"""The Kinesis consumer Lambda: ``app`` (the handler over ``shared.consumer``)."""
