"""The benchmark's child processes: a handler imported with its Lambda environment.

Handlers validate their settings at import, as on a cold start, so every measurement that
imports one runs in a child process (`python -m bench.worker ...`) with the environment the
template gives the function; the function folder reaches the child through PYTHONPATH, as
Lambda puts CodeUri on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.cold_import import FUNCTIONS, lambda_like_environment
from postback_ops.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalStack
from postback_ops.template import REPO_ROOT, function_code, load_template, resources_of_type

MOTO_STACK_NAME = "bench"


def moto_stack(stack_name: str = MOTO_STACK_NAME) -> LocalStack:
    """The names create_resources gives on moto, known before moto starts (a handler reads
    its settings at import)."""
    template = load_template()
    stack = LocalStack(stack_name=stack_name)
    for logical_id in resources_of_type(template, "AWS::DynamoDB::Table"):
        stack.refs[logical_id] = f"{stack_name}-{logical_id}"
    for logical_id in resources_of_type(template, "AWS::SQS::Queue"):
        stack.refs[logical_id] = f"https://sqs.{LOCAL_REGION}.amazonaws.com/{LOCAL_ACCOUNT}/{stack_name}-{logical_id}"
    for logical_id in resources_of_type(template, "AWS::SNS::Topic"):
        stack.refs[logical_id] = f"arn:aws:sns:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{stack_name}-{logical_id}"
    for logical_id in resources_of_type(template, "AWS::SecretsManager::Secret"):
        stack.refs[logical_id] = f"{stack_name}-{logical_id}"  # Secrets Manager takes a name or an ARN
    return stack


def worker_environment(
    names: Iterable[str],
    *,
    extra: Mapping[str, str] | None = None,
    stack: LocalStack | None = None,
    tree: Path | None = None,
) -> dict[str, str]:
    """The Lambda-like environment of these functions (merged) with their folders on PYTHONPATH.

    `tree`: another checkout's functions and layer code (bench.cold_import.checkout) instead of
    this one's, for before/after runs; the benchmark's own modules stay this tree's."""
    env: dict[str, str] = {}
    paths: list[str] = []
    for name in names:
        logical_id = FUNCTIONS[name]
        env.update(lambda_like_environment(logical_id, stack))
        code_dir = function_code(logical_id)[0]
        paths.append(str(code_dir if tree is None else tree / code_dir.relative_to(REPO_ROOT)))
    if tree is not None:
        paths.append(str(tree / "layers" / "shared"))  # ahead of the venv's editable install
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(REPO_ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_worker(task: str, env: Mapping[str, str], *args: str, timeout_s: float = 180) -> dict[str, Any]:
    """Run `python -m bench.worker TASK ...` in a fresh interpreter; its JSON answer."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        out = Path(folder) / "result.json"
        done = subprocess.run(
            # Through a shell that forks: on Linux a process's ru_maxrss starts at the peak of
            # the process it was forked from (the mm's high-water mark survives fork and exec),
            # so the worker is forked from a small shell rather than from this process.
            ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-m", "bench.worker", task, str(out), *args],
            env=dict(env),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout)[-3000:]
            raise RuntimeError(f"bench worker {task} failed (exit {done.returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result
