"""Cold import of each handler in a fresh interpreter, against `import boto3` alone.

The headline figure imports from the layout Lambda has: the function's folder, the shared
layer as its Makefile builds it (with bytecode) and the runtime's boto3, nothing else. The
development venv's figure is kept beside it.

Each handler is imported with the environment template.yaml gives its function (plus what the
Lambda runtime sets), so settings validation, Powertools and the tracer's patching are all in
the figure. Medians over repeated runs: the machine is shared and noisy.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from postback_ops.local.resources import REPO_ROOT, LocalStack, function_code, function_environment, load_template

FUNCTIONS = {
    "ingest": "IngestFunction",
    "outbox": "OutboxFunction",
    "dispatch": "DispatchFunction",
    "testlink": "TestLinkFunction",
}
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


def _medians(samples: dict[str, list[float]], boto3_samples: list[float], prefix: str = "") -> dict[str, object]:
    boto3_ms = statistics.median(boto3_samples)
    cold = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    return {
        f"{prefix}cold_import_ms": cold,
        f"{prefix}boto3_import_ms": round(boto3_ms, 1),
        f"{prefix}cold_import_ratio": {name: round(ms / boto3_ms, 2) for name, ms in cold.items()},
    }


def measure_dev_venv(repeats: int = 7) -> dict[str, object]:
    """Cold imports in the development virtual environment, interleaved run by run.

    The venv holds more than Lambda does (awscrt and pyOpenSSL, which boto3 then imports too),
    so both sides are heavier than in Lambda; kept beside the Lambda-layout figure for scale.
    """
    samples: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    boto3_samples: list[float] = []
    envs = {name: lambda_like_environment(logical_id) for name, logical_id in FUNCTIONS.items()}
    for _ in range(repeats):
        boto3_samples.append(_time_import("boto3", envs["ingest"], None))
        for name, logical_id in FUNCTIONS.items():
            code_dir, module, _ = function_code(logical_id)
            samples[name].append(_time_import(module, envs[name], code_dir))
    return _medians(samples, boto3_samples, prefix="dev_venv_")


def _runtime_boto3_requirements() -> list[str]:
    """boto3 and what it needs, at the lock's versions: what the Lambda runtime provides."""
    wanted = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
    lock = (REPO_ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lock if line.split("==")[0].strip() in wanted and "==" in line]


def _build_lambda_layout(root: Path) -> tuple[Path, Path]:
    """The layer as layers/shared/Makefile builds it, for this machine's platform, and the
    runtime's boto3: both installed from the pinned lists and byte-compiled as Lambda has them."""
    layer, runtime = root / "layer" / "python", root / "runtime"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check"]
    requirements = REPO_ROOT / "layers" / "shared" / "requirements.txt"
    subprocess.run([*pip, "--target", str(layer), "-r", str(requirements)], check=True, timeout=600)
    subprocess.run([*pip, "--target", str(runtime), *_runtime_boto3_requirements()], check=True, timeout=600)
    shutil.copytree(REPO_ROOT / "layers" / "shared" / "postback_relay", layer / "postback_relay")
    for folder in (layer, runtime):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(folder)],
            check=True,
            timeout=600,
        )
    return layer, runtime


def _time_import_isolated(module: str, env: dict[str, str], path: list[Path]) -> float:
    # -S: no site-packages, so nothing but the given folders (as in Lambda) can be imported.
    snippet = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}; " + _SNIPPET.format(module=module)
    out = subprocess.run(
        [sys.executable, "-S", "-c", snippet], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(repeats: int = 7) -> dict[str, object]:
    """Cold imports as Lambda runs them: the function's folder, the layer and the runtime's
    boto3 only (no site-packages), byte-compiled; `import boto3` on the same path for scale."""
    samples: dict[str, list[float]] = {name: [] for name in FUNCTIONS}
    boto3_samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-lambda-layout-") as tmp:
        layer, runtime = _build_lambda_layout(Path(tmp))
        envs = {name: lambda_like_environment(logical_id) for name, logical_id in FUNCTIONS.items()}
        for _ in range(repeats):
            boto3_samples.append(_time_import_isolated("boto3", envs["ingest"], [runtime]))
            for name, logical_id in FUNCTIONS.items():
                code_dir, module, _ = function_code(logical_id)
                samples[name].append(_time_import_isolated(module, envs[name], [code_dir, layer, runtime]))
    return _medians(samples, boto3_samples)
