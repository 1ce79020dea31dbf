"""The local Lambda runtime: the one place that turns the template's functions into callables.

Lambda puts a function's CodeUri folder at /var/task and imports its Handler module from
there, with the environment the template gives it. This module does the same in-process:
it puts each function folder on sys.path, sets the function's environment, imports the
handler module by name (ingest_handler, dispatch_handler, testlink_handler) and wraps it in a
`LocalFunction` that builds a Lambda context for every invocation.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from postback_ops.local import resources
from postback_ops.template import function_code, resources_of_type

LambdaHandler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function of the template, as the local runtime needs it."""

    logical_id: str
    code_dir: Path
    module: str
    attribute: str
    environment: Mapping[str, str]
    timeout_s: int
    memory_mb: int
    events: Mapping[str, Mapping[str, Any]]


@dataclass
class LambdaContext:
    """What Lambda passes as `context`: enough for Powertools' Logger and BatchProcessor."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None
    started_at: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started_at
        return max(0, int((self.timeout_s - elapsed) * 1000))


class LocalFunction:
    """One function's handler, invoked like Lambda invokes it.

    A Lambda instance handles one event at a time and instances share no memory. In-process
    all callers share one module (Powertools resolvers and batch processors keep per-event
    state on module-level objects), so invocations of one function are serialized.
    """

    def __init__(self, spec: FunctionSpec, handler: LambdaHandler, *, region: str, account: str) -> None:
        self.spec = spec
        self._handler = handler
        self._lock = threading.Lock()
        self.function_name = f"local-{spec.logical_id}"
        self.arn = f"arn:aws:lambda:{region}:{account}:function:{self.function_name}"

    @property
    def logical_id(self) -> str:
        return self.spec.logical_id

    def invoke(self, event: Any) -> Any:
        with self._lock:
            # The invocation's clock starts when the instance takes it, as Lambda's does (the
            # dispatcher starts no send its timeout could cut off), not while it waits its turn.
            context = LambdaContext(
                function_name=self.function_name,
                memory_limit_in_mb=self.spec.memory_mb,
                timeout_s=self.spec.timeout_s,
                invoked_function_arn=self.arn,
                log_group_name=f"/aws/lambda/{self.function_name}",
            )
            return self._handler(event, context)


def function_specs(template: Mapping[str, Any], stack: resources.LocalStack) -> dict[str, FunctionSpec]:
    """Every function of the template with its code folder, handler and environment."""
    globals_fn: Mapping[str, Any] = template.get("Globals", {}).get("Function", {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        props: Mapping[str, Any] = resource["Properties"]
        code_dir, module, attribute = function_code(logical_id, template=template)
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=code_dir,
            module=module,
            attribute=attribute,
            environment=resources.function_environment(stack, logical_id, template=template),
            timeout_s=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
            memory_mb=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
            events=props.get("Events", {}) or {},
        )
    return specs


def load_functions(
    specs: Mapping[str, FunctionSpec], *, overrides: Mapping[str, str], region: str, account: str
) -> dict[str, LocalFunction]:
    """Import every handler with its own environment (settings are read at import, as on a
    cold start) and leave os.environ holding all of them, `overrides` winning."""
    for spec in specs.values():
        folder = str(spec.code_dir)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    for spec in specs.values():
        os.environ.update({**spec.environment, **overrides})
    functions: dict[str, LocalFunction] = {}
    for logical_id, spec in specs.items():
        os.environ.update({**spec.environment, **overrides})
        module = importlib.import_module(spec.module)
        handler: LambdaHandler = getattr(module, spec.attribute)
        functions[logical_id] = LocalFunction(spec, handler, region=region, account=account)
    return functions


LOG_MODE_VARIABLE = "POSTBACK_LOCAL_LOG"  # `json`: the handlers' full JSON logs in the terminal


def json_logs_wanted(environ: Mapping[str, str]) -> bool:
    return environ.get(LOG_MODE_VARIABLE, "").strip().lower() == "json"


class MetricLinesFilter(io.TextIOBase):
    """stdout without CloudWatch EMF lines, and (unless `json_logs`) without the handlers' JSON
    log records: the terminal of `make run` reads as the stack's own lines, one per conversion,
    postback, notice and test step. POSTBACK_LOCAL_LOG=json keeps the JSON logs.

    In Lambda, a line of Embedded Metric Format JSON on stdout becomes a metric, not a log
    line; Powertools' `single_metric` prints them even with metrics disabled. Locally they
    would drown the stack's one line per conversion and postback, so they are dropped.
    """

    def __init__(self, target: TextIO, *, json_logs: bool = True) -> None:
        self._target = target
        self._pending = threading.local()
        self._dropped: tuple[str, ...] = ('{"_aws":',) if json_logs else ('{"_aws":', '{"level":')

    def write(self, text: str) -> int:
        pending: str = getattr(self._pending, "text", "") + text
        *lines, rest = pending.split("\n")
        self._pending.text = rest
        kept = [line for line in lines if not line.startswith(self._dropped)]
        if kept:
            self._target.write("".join(f"{line}\n" for line in kept))
            self._target.flush()
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def writable(self) -> bool:
        return True
