"""Route moto's Lambda invocations to in-process Python handlers (tests and the local stack).

moto runs Step Functions definitions for real (`execute_state_machine`), but a Task that
invokes a Lambda function ends in `LambdaBackend.invoke`, which runs the function's code in
Docker. Both Task forms moto supports (`arn:aws:states:::lambda:invoke` and a bare function
ARN) reach it through a boto3 Lambda client: intercepted in-process under `mock_aws`, or sent
to moto's own server (`http://localhost:$MOTO_PORT`) when it runs as ThreadedMotoServer. So
the one place common to both, and the narrowest, is `LambdaBackend.invoke`: patched on the
class (every account and region), it answers routed function names from the handler and
leaves every other function to moto. Nothing has to be created in moto's Lambda for a routed
name, and the handler runs in the process and the environment of the test or the local stack.

With ThreadedMotoServer, two more things are process-wide: moto runs definitions only when
its `execute_state_machine` option is on, and its Step Functions reaches moto's Lambda on
`localhost:$MOTO_PORT` (default 5000). `enable_state_machine_execution(port)` sets both.
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from moto.awslambda.models import LambdaBackend
from moto.core.config import default_user_config

LambdaHandler = Callable[[dict[str, Any], Any], object]  # the context: whatever the handler declares

_lock = threading.Lock()
_routes: dict[str, LambdaHandler] = {}
_original_invoke: Callable[..., Any] | None = None


class LocalLambdaContext:
    """What a handler may read from its context (Powertools' logger reads these)."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = "local"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def function_name_of(name_or_arn: str) -> str:
    """`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`, or a bare name -> name."""
    if name_or_arn.startswith("arn:"):
        parts = name_or_arn.split(":")
        return parts[6] if len(parts) > 6 else name_or_arn
    return name_or_arn.split(":", 1)[0]


def fake_function_arn(function_name: str, *, region: str = "eu-west-1", account: str = "123456789012") -> str:
    """The ARN to substitute for a routed function in a state machine definition."""
    return f"arn:aws:lambda:{region}:{account}:function:{function_name}"


def _routed_invoke(
    self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> str | bytes | None:
    handler = _routes.get(function_name_of(function_name))
    if handler is None:
        assert _original_invoke is not None
        return _original_invoke(self, function_name, qualifier, body, headers, response_headers)  # type: ignore[no-any-return]
    event = json.loads(body) if body else {}
    try:
        result = handler(event, LocalLambdaContext(function_name_of(function_name)))
        payload = json.dumps(result)
    except Exception as exc:  # noqa: BLE001 - any error is the function's error, as Lambda reports it
        # Lambda answers an unhandled exception with this header and body; Step Functions
        # takes `errorType` as the error name its Retry and Catch match.
        response_headers["x-amz-function-error"] = "Unhandled"
        payload = json.dumps(
            {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc)[-5:],
            }
        )
    response_headers["Content-Length"] = str(len(payload.encode()))
    return payload


def install_routes(handlers: Mapping[str, LambdaHandler]) -> None:
    """Route these function names (or ARNs: their name part counts) to the handlers."""
    global _original_invoke
    with _lock:
        if _original_invoke is None:
            _original_invoke = LambdaBackend.invoke
            LambdaBackend.invoke = _routed_invoke  # type: ignore[method-assign]
        for name, handler in handlers.items():
            _routes[function_name_of(name)] = handler


def uninstall_routes(names: Mapping[str, object] | None = None) -> None:
    """Forget these routes (all when None); moto's own invoke is back once none is left."""
    global _original_invoke
    with _lock:
        for name in list(names) if names is not None else list(_routes):
            _routes.pop(function_name_of(name), None)
        if not _routes and _original_invoke is not None:
            LambdaBackend.invoke = _original_invoke  # type: ignore[method-assign]
            _original_invoke = None


def route(function_name_or_arn: str, invoke: Callable[[dict[str, Any]], object]) -> None:
    """Route one function to a callable that takes the event alone (the local stack's
    `LocalFunction.invoke`, which builds its own context)."""
    install_routes({function_name_or_arn: lambda event, _context: invoke(event)})


def enable_state_machine_execution(moto_port: int) -> None:
    """Make an in-process ThreadedMotoServer on `moto_port` run state machine definitions,
    their Lambda tasks reaching that same server (and so the routes above). Must be called
    before the state machine is created: moto keeps executable ones in a separate backend."""
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    os.environ["MOTO_PORT"] = str(moto_port)


@contextmanager
def route_lambda_tasks(handlers: Mapping[str, LambdaHandler]) -> Iterator[None]:
    """Within the block, moto's Lambda invocations of these functions run the handlers."""
    install_routes(handlers)
    try:
        yield
    finally:
        uninstall_routes(handlers)
