"""The persistent local stack: PostgreSQL 15 (the warehouse), the Redshift Data API stand-in
over it and a moto server (Kinesis, S3, SQS, Secrets Manager, CloudFormation), each a
background process on a free port, provisioned for the Kinesis consumer.

    python -m local.stack start|stop|status|env [--state-dir .local-stack/stack]

From Python: ``ensure_stack(state_dir)`` returns a running stack's ``StackInfo`` (starting it
if needed) and ``handler_environment(info)`` the consumer's environment on it.

Modules: ``lifecycle`` (start, stop, status), ``processes`` (the background processes),
``provision`` (stream, dead-letter queue, the applier's queue and its dead-letter queue,
bucket, secrets, warehouse schema, idempotently), ``state``
(``stack.json`` and ``StackInfo``), ``environment`` (the consumer's environment),
``__main__`` (command line).
"""

from local.stack.environment import handler_environment
from local.stack.lifecycle import (
    ComponentStatus,
    ensure_stack,
    running_stack,
    stack_status,
    start_stack,
    stop_stack,
)
from local.stack.processes import StackError
from local.stack.state import DEFAULT_STATE_DIR, Resources, StackInfo

__all__ = [
    "DEFAULT_STATE_DIR",
    "ComponentStatus",
    "Resources",
    "StackError",
    "StackInfo",
    "ensure_stack",
    "handler_environment",
    "running_stack",
    "stack_status",
    "start_stack",
    "stop_stack",
]
