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
from pathlib import Path

from postback_ops.local.resources import LocalStack, function_code, function_environment, load_template

FUNCTIONS = {"ingest": "IngestFunction", "dispatch": "DispatchFunction", "testlink": "TestLinkFunction"}
_SNIPPET = "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"


def _lambda_like_environment(logical_id: str) -> dict[str, str]:
    template = load_template()
    stack = LocalStack(stack_name="bench")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    env.update(function_environment(stack, logical_id, template=template))
    env.update(
        {
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_LAMBDA_FUNCTION_NAME": f"bench-{logical_id}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "PYTHONDONTWRITEBYTECODE": "",
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
    envs = {name: _lambda_like_environment(logical_id) for name, logical_id in FUNCTIONS.items()}
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
