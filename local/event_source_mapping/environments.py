"""Where the function runs: Lambda runs each concurrent invocation in an execution environment
of its own (its own process, module globals and clients), reused by later invocations.

- ``InProcess(handler)``: a callable run in the mapping's threads. With more than one shard
  or a ``ParallelizationFactor`` above 1 it is called from several threads at once, so it must
  be thread-safe (the tests' recording handlers are).
- ``IsolatedProcesses("package.module.function")``: like Lambda's ``Handler`` setting. Each
  environment is a process of its own (``multiprocessing`` with ``spawn``: a fresh
  interpreter, no state copied from the mapping's process) that imports the module once (the
  cold start) and then serves invocations one at a time. The pool keeps idle environments
  for reuse and starts a new one when all are busy, so there are at most as many as
  invocations run at once. The Kinesis consumer needs this: its module keeps a cached
  processor and writer per HMAC key, and Powertools keeps metrics in class-level dicts that
  concurrent invocations in one process would mix and clear under each other.

An environment that timed out or whose process died is discarded, as Lambda discards one
after a timeout or a runtime exit; the next invocation gets a fresh one.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from local.event_source_mapping.context import LambdaContext

logger = logging.getLogger(__name__)

Handler = Any  # Callable[[dict[str, Any], Any], Any]; Any keeps handlers with typed contexts

# Lambda allows an environment's init 10 s; a busy 2-core machine importing boto3 and
# Powertools in a fresh interpreter can take longer, so locally the limit is generous.
INIT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Invocation:
    """What came back from one invocation: the response, or why there is none."""

    response: Any = None
    error: str | None = None  # the exception's type name, or what went wrong; never a message


class FunctionEnvironments(Protocol):
    def invoke(self, event: dict[str, Any], context: LambdaContext,
               timeout_seconds: float) -> Invocation: ...

    def close(self) -> None: ...


class InProcess:
    """The handler called in the caller's thread. A run longer than the timeout cannot be cut
    off; the mapping finds it timed out after it returns."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def invoke(self, event: dict[str, Any], context: LambdaContext,
               timeout_seconds: float) -> Invocation:
        try:
            return Invocation(response=self.handler(event, context))
        except Exception as error:
            # The error's type only: its message may quote record data.
            return Invocation(error=type(error).__name__)

    def close(self) -> None:
        """Nothing to release."""


def _serve(handler_path: str, connection: Connection) -> None:
    """An environment's process: import the handler, then serve invocations until the mapping
    closes the pipe (or its process dies). The function's own variables (its service name)
    are set before the import, where Powertools reads them."""
    from local.stack.environment import function_variables

    os.environ.update(function_variables(handler_path))
    module_name, _, attribute = handler_path.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:
        connection.send(("init_error", type(error).__name__))
        return
    connection.send(("ready", ""))
    while True:
        try:
            event, fields = connection.recv()
        except (EOFError, OSError):
            return
        try:
            response = handler(event, LambdaContext(**fields))
        except Exception as error:
            connection.send(("error", type(error).__name__))
            continue
        try:
            text = json.dumps(response)
        except (TypeError, ValueError):
            connection.send(("error", "response is not JSON serializable"))
            continue
        connection.send(("response", text))


class _Environment:
    def __init__(self, handler_path: str, number: int) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.connection, child = spawn.Pipe()
        self.process = spawn.Process(target=_serve, args=(handler_path, child), daemon=True,
                                     name=f"lambda-environment-{number}")
        self.process.start()
        child.close()
        self.ready = False

    def _receive(self, timeout_seconds: float) -> tuple[str, str] | None:
        if not self.connection.poll(timeout_seconds):
            return None
        try:
            kind, payload = self.connection.recv()
        except (EOFError, OSError):
            return ("exited", "")
        return str(kind), str(payload)

    def call(self, event: dict[str, Any], context: LambdaContext,
             timeout_seconds: float) -> tuple[Invocation, bool]:
        """(what came back, whether the environment can be reused)."""
        if not self.ready:
            started = self._receive(INIT_TIMEOUT_SECONDS)
            if started is None:
                return Invocation(error="the function's init timed out"), False
            if started[0] != "ready":
                return Invocation(error=f"the function failed to start ({started[1]})"), False
            self.ready = True
        fields = {"function_name": context.function_name,
                  "invoked_function_arn": context.invoked_function_arn,
                  "memory_limit_in_mb": context.memory_limit_in_mb,
                  "function_version": context.function_version,
                  "timeout_seconds": context.timeout_seconds,
                  "aws_request_id": context.aws_request_id,
                  "log_stream_name": context.log_stream_name}
        try:
            self.connection.send((event, fields))
        except (OSError, ValueError):
            return Invocation(error="the function's runtime exited"), False
        answer = self._receive(timeout_seconds)
        if answer is None:
            return Invocation(error="timed out"), False
        kind, payload = answer
        if kind == "response":
            return Invocation(response=json.loads(payload)), True
        if kind == "error":
            return Invocation(error=payload), True
        return Invocation(error="the function's runtime exited"), False

    def stop(self) -> None:
        self.connection.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


class IsolatedProcesses:
    """A pool of execution environments, each a process running ``handler_path``
    (``package.module.function``)."""

    def __init__(self, handler_path: str) -> None:
        module_name, _, attribute = handler_path.rpartition(".")
        if not module_name or not attribute:
            raise ValueError(f"handler {handler_path!r}: give it as 'package.module.function'")
        try:
            found = importlib.util.find_spec(module_name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            raise ValueError(f"handler {handler_path!r}: no module {module_name!r} on the "
                             "Python path; give it as 'package.module.function'")
        self.handler_path = handler_path
        self._lock = threading.Lock()
        self._idle: list[_Environment] = []
        self._live: set[_Environment] = set()
        self.started = 0  # environments started so far (cold starts)

    def invoke(self, event: dict[str, Any], context: LambdaContext,
               timeout_seconds: float) -> Invocation:
        with self._lock:
            if self._idle:
                environment = self._idle.pop()
            else:
                self.started += 1
                environment = _Environment(self.handler_path, self.started)
                self._live.add(environment)
                logger.info("execution environment started",
                            extra={"environment": self.started})
        reusable = False
        try:
            invocation, reusable = environment.call(event, context, timeout_seconds)
            return invocation
        finally:
            with self._lock:
                if reusable:
                    self._idle.append(environment)
                else:
                    self._live.discard(environment)
            if not reusable:
                environment.stop()

    def close(self) -> None:
        """Stop every environment (each finishes the invocation it is running first)."""
        with self._lock:
            environments = list(self._live)
            self._live.clear()
            self._idle.clear()
        for environment in environments:
            environment.stop()
