"""Local stand-ins for the AWS parts (no AWS account, no Docker needed)."""
