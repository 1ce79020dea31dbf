"""Cold import of each handler in a fresh interpreter, against `import boto3` alone.

The headline figure imports from the layout Lambda has: the function's folder, the shared
layer as its Makefile builds it (with bytecode) and the runtime's boto3, nothing else. The
development venv's figure is kept beside it.

Each handler is imported with the environment template.yaml gives its function (plus what the
Lambda runtime sets), so settings validation, Powertools and the tracer's patching are all in
the figure. Medians over repeated runs: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from postback_ops.local.resources import LocalStack, function_environment
from postback_ops.template import REPO_ROOT, function_code, load_template, resources_of_type

# Every function of the template, by a short name: IngestFunction -> ingest (a function added
# later is measured without a change here).
FUNCTIONS = {
    logical_id.removesuffix("Function").lower(): logical_id
    for logical_id in resources_of_type(load_template(), "AWS::Serverless::Function")
}
# Prints the wall and the CPU milliseconds of the import.
_SNIPPET = (
    "import time; t = time.perf_counter(); c = time.process_time(); import {module}; "
    "print((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000)"
)


def lambda_like_environment(
    logical_id: str, stack: LocalStack | None = None, *, template_path: Path | None = None
) -> dict[str, str]:
    """The template's variables for the function plus the ones the Lambda runtime sets.

    LAMBDA_TASK_ROOT matters: without it the X-Ray SDK believes it runs outside Lambda and
    builds a centralised sampler with two botocore clients at import (about 250 ms here),
    which a real cold start never pays.
    """
    template = load_template(template_path) if template_path is not None else load_template()
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
    """Wall milliseconds of `import module` in a fresh interpreter (see _time_import_isolated)."""
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
    return float(out.stdout.strip().splitlines()[-1].split()[0])


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


def _build_lambda_layout(root: Path, relay_trees: Mapping[str, Path] | None = None) -> tuple[dict[str, Path], Path]:
    """The layer as layers/shared/Makefile builds it, for this machine's platform, and the
    runtime's boto3: both installed from the pinned lists and byte-compiled as Lambda has them.

    One layer per tree in `relay_trees` (name -> a checkout's root; default this one), each
    with the same third-party packages and that tree's postback_relay."""
    trees = dict(relay_trees or {"current": REPO_ROOT})
    deps, runtime = root / "deps", root / "runtime"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check"]
    requirements = REPO_ROOT / "layers" / "shared" / "requirements.txt"
    subprocess.run([*pip, "--target", str(deps), "-r", str(requirements)], check=True, timeout=600)
    subprocess.run([*pip, "--target", str(runtime), *_runtime_boto3_requirements()], check=True, timeout=600)
    layers: dict[str, Path] = {}
    for name, tree in trees.items():
        layer = root / f"layer-{name}" / "python"
        shutil.copytree(deps, layer)
        shutil.copytree(tree / "layers" / "shared" / "postback_relay", layer / "postback_relay")
        layers[name] = layer
    for folder in (*layers.values(), runtime):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(folder)],
            check=True,
            timeout=600,
        )
    return layers, runtime


def _time_import_isolated(module: str, env: dict[str, str], path: list[Path]) -> tuple[float, float]:
    """Wall and CPU milliseconds of the import. The CPU time is kept beside the headline wall
    time: on a shared machine it moves less with the neighbours' load."""
    # -S: no site-packages, so nothing but the given folders (as in Lambda) can be imported.
    snippet = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}; " + _SNIPPET.format(module=module)
    out = subprocess.run(
        [sys.executable, "-S", "-c", snippet], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def checkout(ref: str, root: Path) -> Path:
    """The functions and the layer's code of git `ref`, exported to `root` (for before/after runs)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref, "functions", "layers/shared", "template.yaml"],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, timeout=120)
    return root


def _tree_environment(logical_id: str, tree: Path) -> dict[str, str]:
    """The function's environment as that tree's template gives it (a baseline keeps its own)."""
    template_path = tree / "template.yaml"
    return lambda_like_environment(logical_id, template_path=template_path if template_path.exists() else None)


def _code_dir(logical_id: str, tree: Path) -> Path:
    code_dir, _, _ = function_code(logical_id)
    return tree / code_dir.relative_to(REPO_ROOT)


def measure(
    repeats: int = 7, *, baseline: Path | None = None, functions: tuple[str, ...] | None = None
) -> dict[str, object]:
    """Cold imports as Lambda runs them: the function's folder, the layer and the runtime's
    boto3 only (no site-packages), byte-compiled; `import boto3` on the same path for scale.

    With `baseline` (a checkout, see `checkout`), that tree's handlers are imported in the same
    rounds, interleaved with this tree's, and reported under `baseline_*`. `functions`: only
    these (short names of FUNCTIONS; every one by default)."""
    measured = {name: FUNCTIONS[name] for name in (functions or tuple(FUNCTIONS))}
    trees = {"current": REPO_ROOT, **({"baseline": baseline} if baseline is not None else {})}
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {tree: {} for tree in trees}
    boto3_samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-lambda-layout-") as tmp:
        layers, runtime = _build_lambda_layout(Path(tmp), trees)
        envs = {
            (tree_name, name): _tree_environment(logical_id, tree)
            for name, logical_id in measured.items()
            for tree_name, tree in trees.items()
        }
        boto3_env = _tree_environment("IngestFunction", REPO_ROOT)
        for _ in range(repeats):
            boto3_samples.append(_time_import_isolated("boto3", boto3_env, [runtime]))
            for name, logical_id in measured.items():
                _, module, _ = function_code(logical_id)
                for tree_name, tree in trees.items():
                    code_dir = _code_dir(logical_id, tree)
                    if not code_dir.exists():
                        continue  # a function the baseline did not have yet
                    path = [code_dir, layers[tree_name], runtime]
                    env = envs[(tree_name, name)]
                    samples[tree_name].setdefault(name, []).append(_time_import_isolated(module, env, path))
    results: dict[str, object] = {}
    for tree_name, prefix in (("current", ""), ("baseline", "baseline_")):
        if tree_name not in trees:
            continue
        wall = {name: [w for w, _ in runs] for name, runs in samples[tree_name].items()}
        cpu = {name: [c for _, c in runs] for name, runs in samples[tree_name].items()}
        results.update(_medians(wall, [w for w, _ in boto3_samples], prefix=prefix))
        results.update(_medians(cpu, [c for _, c in boto3_samples], prefix=f"{prefix}cpu_"))
    results["cold_import_runs"] = repeats
    return results


# --- the first invocation after a cold start ------------------------------------------------

FIRST_CALL_SCRIPT = Path(__file__).resolve().parent / "first_call.py"


def _first_call_specs(affiliate_url: str) -> dict[str, dict[str, Any]]:
    """What each measured function gets: its events and the AWS answers (not the paths)."""
    from bench import events as support
    from postback_relay.domain.delivery import PostbackMessage, delivery_id_for
    from postback_relay.domain.events import Event

    affiliate_item = support.affiliate_item(support.affiliate_config_data(affiliate_url), allow_loopback=True)

    def postback(n: int) -> dict[str, Any]:
        transaction_id = f"F-{n}"
        body = PostbackMessage(
            delivery_id=delivery_id_for(transaction_id, Event.SALE, support.AFFILIATE_ID, 0),
            affiliate_id=support.AFFILIATE_ID,
            transaction_id=transaction_id,
            event=Event.SALE,
            offer_id="89",
            url=f"{affiliate_url}/postback?cid=c123&payout=25.00&cur=EUR&ev=sale&offer=89&tx={transaction_id}",
            created_at=datetime.now(UTC),
        ).model_dump_json()
        return support.sqs_record(body, f"first-{n}")

    return {
        "ingest": {
            # One conversion per request: the first builds the clients, reads the secret and
            # the affiliate's config (the cache is cold); the second finds them warm.
            "events": [support.http_event(support.request_body([f"FIRST-{n}"])) for n in (1, 2)],
            "check_status": 202,
            "secret": support.SECRET,
            "affiliate_item": affiliate_item,
        },
        "dispatch": {
            "events": [{"Records": [postback(n)]} for n in (1, 2)],
            "affiliate_item": affiliate_item,
        },
    }


def _time_first_call(spec: Mapping[str, Any], env: Mapping[str, str], path: list[Path], folder: Path) -> dict[str, Any]:
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps({**spec, "path": [str(p) for p in path]}), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-S", str(FIRST_CALL_SCRIPT), str(spec_path)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"first call failed (exit {out.returncode}):\n{(out.stderr or out.stdout)[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_first_invocation(repeats: int = 7, *, baseline: Path | None = None) -> dict[str, object]:
    """`first_invocation_ms`: a fresh interpreter on the Lambda layout imports the handler
    (settings validated, Powertools set up), then handles its first conversion (ingest) or
    postback (dispatch): clients created, the secret and the affiliate's config read, AWS
    answered in memory after serialisation and signing, the postback sent to a server on
    127.0.0.1. Medians of interleaved runs, the baseline tree's beside this one's."""
    from bench.events import AffiliateServer

    trees = {"current": REPO_ROOT, **({"baseline": baseline} if baseline is not None else {})}
    functions = {"ingest": "IngestFunction", "dispatch": "DispatchFunction"}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {tree: {} for tree in trees}
    affiliate = AffiliateServer()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-first-call-") as tmp:
            layers, runtime = _build_lambda_layout(Path(tmp), trees)
            specs = _first_call_specs(affiliate.url)
            for _ in range(repeats):
                for name, logical_id in functions.items():
                    _, module, attribute = function_code(logical_id)
                    for tree_name, tree in trees.items():
                        env = _tree_environment(logical_id, tree)
                        env["ALLOW_LOOPBACK"] = "true"  # the affiliate server is on 127.0.0.1
                        spec = {
                            **specs[name],
                            "module": module,
                            "attribute": attribute,
                            "items": {env["AFFILIATES_TABLE"]: specs[name]["affiliate_item"]},
                        }
                        path = [_code_dir(logical_id, tree), layers[tree_name], runtime]
                        # Fresh events each run: ingest's idempotency and signatures are per request.
                        if name == "ingest":
                            spec["events"] = _first_call_specs(affiliate.url)["ingest"]["events"]
                        runs[tree_name].setdefault(name, []).append(_time_first_call(spec, env, path, Path(tmp)))
                # Ingest initialised as under SnapStart: the priming runs during the import (in
                # the snapshot, off the caller's path); the first call is what a request waits
                # for after a restore (the restore itself is Lambda's and not in the figure).
                env = {**_tree_environment("IngestFunction", REPO_ROOT), "ALLOW_LOOPBACK": "true"}
                env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
                _, module, attribute = function_code("IngestFunction")
                spec = {
                    **specs["ingest"],
                    "events": _first_call_specs(affiliate.url)["ingest"]["events"],
                    "module": module,
                    "attribute": attribute,
                    "items": {env["AFFILIATES_TABLE"]: specs["ingest"]["affiliate_item"]},
                    "answer_aws_before_import": True,
                }
                path = [_code_dir("IngestFunction", REPO_ROOT), layers["current"], runtime]
                runs["current"].setdefault("ingest_snapstart_init", []).append(
                    _time_first_call(spec, env, path, Path(tmp))
                )
    finally:
        affiliate.stop()

    def medians(tree: str) -> dict[str, dict[str, float]]:
        return {
            name: {
                key: round(statistics.median(float(r[key]) for r in samples), 1)
                for key in ("import_ms", "first_call_ms", "second_call_ms", "first_invocation_ms")
            }
            for name, samples in runs[tree].items()
        }

    results: dict[str, object] = {"first_invocation": medians("current")}
    results["first_invocation_ms"] = {
        name: figures["first_invocation_ms"]
        for name, figures in results["first_invocation"].items()  # type: ignore[attr-defined]
        if "snapstart" not in name  # its import is the snapshot's init, not on a caller's path
    }
    if baseline is not None:
        results["baseline_first_invocation"] = medians("baseline")
    return results
