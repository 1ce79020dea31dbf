"""Cold import of each handler in a fresh interpreter, against `import boto3` alone.

Each handler is imported with the environment template.yaml gives its function (plus what the
Lambda runtime sets), so settings validation, Powertools and the tracer's patching are all in
the figure. Medians over repeated runs: the machine is shared and noisy.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from postback_ops.local.resources import LocalStack, function_code, function_environment, load_template

FUNCTIONS = {"ingest": "IngestFunction", "dispatch": "DispatchFunction", "testlink": "TestLinkFunction"}
_SNIPPET = "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"


def lambda_like_environment(logical_id: str, stack: LocalStack | None = None) -> dict[str, str]:
    """The template's variables for the function plus the ones the Lambda runtime sets.

    LAMBDA_TASK_ROOT matters: without it the X-Ray SDK believes it runs outside Lambda and
    builds a centralised sampler with two botocore clients at import (about 250 ms here),
    which a real cold start never pays.
    """
    template = load_template()
    stack = stack or LocalStack(stack_name="bench")
    code_dir, module, attribute = function_code(logical_id, template=template)
    props = template["Resources"][logical_id]["Properties"]
    memory = props.get("MemorySize", template.get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SYSTEMROOT")}
    env.update(function_environment(stack, logical_id, template=template))
    env.update(
        {
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_LAMBDA_FUNCTION_NAME": f"bench-{logical_id}",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/bench-{logical_id}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": f"{module}.{attribute}",
        }
    )
    return env


def _time_import(module: str, env: dict[str, str], pythonpath: Path | None) -> float:
    run_env = dict(env)
    if pythonpath is not None:
        run_env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPET.format(module=module)],
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(repeats: int = 7) -> dict[str, object]:
    """Median cold import per handler, `import boto3` for scale, interleaved run by run."""
    samples: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    boto3_samples: list[float] = []
    envs = {name: lambda_like_environment(logical_id) for name, logical_id in FUNCTIONS.items()}
    for _ in range(repeats):
        boto3_samples.append(_time_import("boto3", envs["ingest"], None))
        for name, logical_id in FUNCTIONS.items():
            code_dir, module, _ = function_code(logical_id)
            samples[name].append(_time_import(module, envs[name], code_dir))
    boto3_ms = statistics.median(boto3_samples)
    cold = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    return {
        "cold_import_ms": cold,
        "boto3_import_ms": round(boto3_ms, 1),
        "cold_import_ratio": {name: round(ms / boto3_ms, 2) for name, ms in cold.items()},
    }


def measure_from_source(repeats: int = 3) -> dict[str, object]:
    """The same imports with no bytecode cache at all: every module compiled at import.

    That is what a cold start pays for any module shipped without its .pyc on a read-only
    file system (Lambda's /opt and /var/task): the layer's build deletes every __pycache__.
    boto3 is timed the same way for scale (the runtime's own copy may well be precompiled).
    """
    samples: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    boto3_samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-no-pyc-") as empty:
        no_cache = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": empty}
        envs = {name: {**lambda_like_environment(logical_id), **no_cache} for name, logical_id in FUNCTIONS.items()}
        for _ in range(repeats):
            boto3_samples.append(_time_import("boto3", envs["ingest"], None))
            for name, logical_id in FUNCTIONS.items():
                code_dir, module, _ = function_code(logical_id)
                samples[name].append(_time_import(module, envs[name], code_dir))
    boto3_ms = statistics.median(boto3_samples)
    cold = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    return {
        "cold_import_from_source_ms": cold,
        "boto3_import_from_source_ms": round(boto3_ms, 1),
        "cold_import_from_source_extra_ms": {name: round(ms - boto3_ms, 1) for name, ms in cold.items()},
    }
