"""Record every AWS call a function, the state machine or the CLI makes, for the IAM check.

Each botocore client is tagged, when it is created, with the principal whose code created it:
the innermost frame of the creating call stack that lies in a function's code folder (its
CodeUri in template.yaml), or in the `postback_relay.wiring` builder that function's code calls
(`wiring.dispatcher` for the dispatch function: a test that builds a dispatcher through wiring
makes the function's calls), names the function; one in moto's Step Functions names the state
machine (moto runs Task states through a Lambda client it creates); one in the CLI's package
(postback_ops, outside the local stack's own code) names the CLI. Clients created by tests and
by the local stack's stand-ins are not tagged and not recorded. A tag rides on the client, so
calls made from worker threads count for the function whose wiring built the client.

Every tagged call appends one JSON line per (principal, action, resource), first time seen in
the process, to the file named by POSTBACK_AWS_CALL_LOG. Subprocesses record too: the pytest
plugin puts `site/` (a sitecustomize that calls `install_from_env`) on their PYTHONPATH.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session

from postback_ops.awsrules.calls import authorizations

ENV_VAR = "POSTBACK_AWS_CALL_LOG"
SITE_DIR = Path(__file__).resolve().parent / "site"
_REPO_ROOT = Path(__file__).resolve().parents[3]
_OPS_DIR = _REPO_ROOT / "ops" / "postback_ops"
_LOCAL_STACK_DIR = _OPS_DIR / "local"
_AWSRULES_DIR = _OPS_DIR / "awsrules"
_WIRING = _REPO_ROOT / "layers" / "shared" / "postback_relay" / "wiring.py"

_lock = threading.Lock()
_installed: dict[str, Any] = {}
_seen: set[tuple[str, str, str]] = set()


def _function_dirs() -> dict[str, str]:
    """Each function's code folder (resolved) -> its logical ID, from template.yaml."""
    from postback_ops.template import function_code, load_template, resources_of_type

    template = load_template()
    return {
        str(function_code(logical_id, template=template)[0].resolve()): logical_id
        for logical_id in resources_of_type(template, "AWS::Serverless::Function")
    }


def _wiring_call(node: ast.AST, names: set[str]) -> str | None:
    """`wiring.<name>(...)`'s name, for a name in `names`."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "wiring"
        and node.func.attr in names
    ):
        return node.func.attr
    return None


def wiring_builders(function_dirs: dict[str, str], wiring: Path = _WIRING) -> dict[str, str]:
    """The `postback_relay.wiring` builder of each function's service (the call its code
    holds in `wiring.OnFirstUse(...)`: `wiring.dispatcher` for the dispatch function) -> that
    function's logical ID. A builder two functions hold names neither."""
    defined = {
        node.name for node in ast.parse(wiring.read_text(encoding="utf-8")).body if isinstance(node, ast.FunctionDef)
    }
    holders: dict[str, set[str]] = {}
    for folder, logical_id in function_dirs.items():
        for source in sorted(Path(folder).glob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if _wiring_call(node, {"OnFirstUse"}) is None:
                    continue
                assert isinstance(node, ast.Call)
                for inner in (n for argument in node.args for n in ast.walk(argument)):
                    builder = _wiring_call(inner, defined)
                    if builder is not None:
                        holders.setdefault(builder, set()).add(logical_id)
    return {builder: next(iter(ids)) for builder, ids in holders.items() if len(ids) == 1}


def principal_of_stack(function_dirs: dict[str, str], builders: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(kind, principal) of the code creating a client now, or None for tests and stand-ins."""
    wiring_file = str(_WIRING)
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        folder = os.path.dirname(os.path.abspath(filename))
        if folder in function_dirs:
            return "function", function_dirs[folder]
        if builders and frame.f_code.co_name in builders and os.path.abspath(filename) == wiring_file:
            return "function", builders[frame.f_code.co_name]
        normalized = filename.replace(os.sep, "/")
        if "/moto/stepfunctions/" in normalized:
            return "state_machine", "StepFunctions"
        if filename.startswith(str(_OPS_DIR)) and not filename.startswith((str(_LOCAL_STACK_DIR), str(_AWSRULES_DIR))):
            return "cli", "postback CLI"
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _writer(log_path: Path) -> Callable[[dict[str, Any]], None]:
    def write(record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    return write


def install(log_path: Path | str) -> None:
    """Tag every client created from now on, in this process, and record its calls."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        if _installed:
            _installed["write"] = _writer(Path(log_path))
            return
        _installed["write"] = _writer(Path(log_path))
        function_dirs = _function_dirs()
        builders = wiring_builders(function_dirs)
        original = botocore.session.Session.create_client
        _installed["original"] = original

        def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
            client = original(self, *args, **kwargs)
            who = principal_of_stack(function_dirs, builders)
            if who is not None:
                _tag(client, *who)
            return client

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
        _wrap_builders(builders)


def _wrap_builders(builders: dict[str, str]) -> None:
    """A client handed to a function's wiring builder (a test's own, `dynamodb=client`) is
    that function's from then on, like one the builder makes."""
    from postback_relay import wiring

    for name, principal in builders.items():
        original = getattr(wiring, name)
        if getattr(original, "__wrapped__", None) is not None:
            continue

        @functools.wraps(original)
        def built(*args: Any, _original: Any = original, _principal: str = principal, **kwargs: Any) -> Any:
            for value in (*args, *kwargs.values()):
                if hasattr(getattr(value, "meta", None), "service_model"):
                    _tag(value, "function", _principal)
            return _original(*args, **kwargs)

        _installed.setdefault("builders", {})[name] = original
        setattr(wiring, name, built)


def _tag(client: Any, kind: str, principal: str) -> None:
    if getattr(client, "_postback_principal", None) is not None:
        return  # tagged when it was made, or handed to a builder already
    client._postback_principal = principal
    service = client.meta.service_model.signing_name or client.meta.service_model.endpoint_prefix
    region = client.meta.region_name or os.environ.get("AWS_DEFAULT_REGION", "")

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        for auth in authorizations(service, model.name, params, region=region):
            key = (principal, auth.action, auth.resource)
            if key in _seen:
                continue
            _seen.add(key)
            _installed["write"](
                {
                    "kind": kind,
                    "principal": principal,
                    "service": service,
                    "operation": model.name,
                    "action": auth.action,
                    "resource": auth.resource,
                    "pid": os.getpid(),
                }
            )

    client.meta.events.register("before-parameter-build", record)


def install_from_env() -> None:
    """Install when POSTBACK_AWS_CALL_LOG names a file (a subprocess of a recorded test run)."""
    log_path = os.environ.get(ENV_VAR)
    if log_path:
        install(log_path)


def uninstall() -> None:
    with _lock:
        original = _installed.pop("original", None)
        if original is not None:
            botocore.session.Session.create_client = original  # type: ignore[method-assign]
        if "builders" in _installed:
            from postback_relay import wiring

            for name, builder in _installed.pop("builders").items():
                setattr(wiring, name, builder)
        _installed.clear()
        _seen.clear()
