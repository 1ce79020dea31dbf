"""`make bench` (`python -m bench`): the benchmark suite, a table, and bench/results.json.
`python -m bench cold` and `python -m bench portal` run parts alone (see their --help).

Environment: BENCH_E2E_SECONDS (60) shortens the load on the local stack, BENCH_E2E_RATE (20)
sets its target conversions per second, BENCH_REPEATS (3) the runs per warm figure,
BENCH_MONTHLY_CONVERSIONS (1000000) the volume the X-Ray line of the bill assumes.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bill, ceiling, cold_import, cost, e2e_load, portal_page, waits
from bench.events import TRACE_HEADER, AffiliateServer
from bench.support import MOTO_STACK_NAME, moto_stack, run_worker, worker_environment
from postback_ops.template import load_template
from postback_relay.adapters.dynamodb_conversions import TTL_DAYS as CONVERSION_TTL_DAYS
from postback_relay.adapters.dynamodb_deliveries import DELIVERY_TTL_DAYS
from postback_relay.services.ingest import RECORD_WORKERS

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"

# --- what this machine's figures are scaled by (every one of them an assumption) ----------------
LAMBDA_MB_PER_VCPU = cost.LAMBDA_MB_PER_VCPU  # one vCPU at 1,769 MB (see bench.cost)
# Round trips the in-memory AWS leaves out (in-region, p50, warm connections).
DYNAMODB_WRITE_MS = 5.0
SQS_SEND_MS = 10.0
# A batch of 10 postbacks waits for the slowest of 10 affiliate servers called concurrently.
AFFILIATE_BATCH_WAIT_MS = 200.0
# CloudWatch Logs per invocation beyond what the handler prints: the platform's JSON lines
# (platform.start, platform.report) of a traced function.
PLATFORM_LOG_BYTES_PER_INVOCATION = 600
SECONDS_PER_MONTH = cost.SECONDS_PER_MONTH
# A DynamoDB read or write round trip in the dispatcher (in-region, p50): one read and one write
# per postback, each in the postback's own thread.
DYNAMODB_READ_MS = 5.0
# The outbox function (issue 13's other half): not measured by this benchmark. Its CPU per
# stream record on this machine is taken as 1 ms (decode the record, build the SQS entries),
# scaled like the others by its memory; each SendMessageBatch is a round trip.
OUTBOX_CPU_MS_PER_RECORD = 1.0
OUTBOX_MEMORY_MB_DEFAULT = 256
DISPATCH_BATCH_SIZES = (1, 10, 25, 50, 100)
MONTHLY_VOLUMES = {"1m": 1_000_000, "10m": 10_000_000, "100m": 100_000_000}
REGIONS = ("eu-west-1", "us-east-1")

COLD_IMPORT_MAX_RATIO = 1.5
CONCURRENCY_MAX_RATIO = 1.3
ISOLATION_MAX_S = 1.0
COST_MAX_USD = 3.00
LATENCY_P50_MAX_MS = 1500.0
LATENCY_P99_MAX_MS = 3000.0
WHOLE_BILL_MAX_USD = {"http_api": 3.60, "function_url": 2.50}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _say(line: str) -> None:
    print(line, flush=True)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


# --- the parts --------------------------------------------------------------------------------


def warm_figures(repeats: int, *, tree: Path | None = None, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Warm per-invocation times and peak RSS, each a median over `repeats` fresh processes
    (of another checkout's handlers with `tree`; only the figures named in `only`)."""
    traced = {"_X_AMZN_TRACE_ID": TRACE_HEADER}
    ingest_env = worker_environment(["ingest"], extra=traced, tree=tree)
    dispatch_env = worker_environment(["dispatch"], extra={**traced, "ALLOW_LOOPBACK": "true"}, tree=tree)
    affiliate = AffiliateServer()
    runs: dict[str, list[dict[str, Any]]] = {}
    plan: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
        "ingest_single_fakes": ("ingest-warm", ingest_env, ("1000", "1", "fakes")),
        "ingest_batch_fakes": ("ingest-warm", ingest_env, ("40", "100", "fakes")),
        "dispatch_fakes": ("dispatch-warm", dispatch_env, ("100", affiliate.url, "fakes")),
        "ingest_single_botocore": ("ingest-warm", ingest_env, ("1000", "1", "botocore")),
        "ingest_batch_botocore": ("ingest-warm", ingest_env, ("40", "100", "botocore")),
        "dispatch_botocore": ("dispatch-warm", dispatch_env, ("100", affiliate.url, "botocore")),
    }
    if only is not None:
        plan = {name: step for name, step in plan.items() if name in only}
    try:
        for _ in range(repeats):  # interleaved: a noisy minute hurts every figure alike
            for name, (task, env, args) in plan.items():
                runs.setdefault(name, []).append(run_worker(task, env, *args))
    finally:
        affiliate.stop()

    def median_of(name: str, *path: str) -> float:
        values = []
        for run in runs[name]:
            value: Any = run
            for key in path:
                value = value[key]
            values.append(float(value))
        return _median(values)

    figures = {
        name: {
            "wall_us": median_of(name, "wall_us", "median"),
            "cpu_us": median_of(name, "cpu_us", "median"),
            "log_bytes_per_invocation": median_of(name, "log_bytes_per_invocation"),
            "log_bytes_per_invocation_at_warning": median_of(name, "log_bytes_per_invocation_at_warning"),
            "peak_rss_mb": median_of(name, "rss_mb", "peak"),
            "vm_hwm_mb": median_of(name, "rss_mb", "vm_hwm"),
            "rss_after_import_mb": median_of(name, "rss_mb", "after_import"),
            "invocations": runs[name][0]["wall_us"]["n"],
        }
        for name in plan
    }
    return {"figures": figures, "runs": runs}


def concurrency_figures() -> dict[str, Any]:
    env = worker_environment(["dispatch"], extra={"ALLOW_LOOPBACK": "true", "POWERTOOLS_TRACE_DISABLED": "true"})
    return run_worker("dispatch-concurrency", env, "5", timeout_s=240)


def dispatch_batch_figures() -> dict[str, Any]:
    env = worker_environment(["dispatch"], extra={"ALLOW_LOOPBACK": "true", "POWERTOOLS_TRACE_DISABLED": "true"})
    sizes = [str(size) for size in DISPATCH_BATCH_SIZES]
    return run_worker("dispatch-batch-sizes", env, "3", *sizes, timeout_s=300)


def dispatch_wall_s(batches: Mapping[str, Any], size: float, *, cpu_per_postback_s: float, memory_mb: int) -> float:
    """A dispatch batch's wall time on Lambda: the measured wait for the affiliates (the batch's
    wall here less its CPU, interpolated between the measured batch sizes), one DynamoDB read
    and one write round trip, and the CPU of `size` postbacks with the real clients at the
    memory's share of a vCPU (Lambda: one vCPU at 1,769 MB)."""
    measured = sorted((int(k), float(v["wall_s"]) - float(v["cpu_s"])) for k, v in batches["by_batch_size"].items())
    waits = [(s, max(0.0, w)) for s, w in measured]
    if size <= waits[0][0]:
        wait = waits[0][1]
    elif size >= waits[-1][0]:
        wait = waits[-1][1]
    else:
        wait = next(
            w0 + (w1 - w0) * (size - s0) / (s1 - s0)
            for (s0, w0), (s1, w1) in itertools.pairwise(waits)
            if s0 <= size <= s1
        )
    network = wait + (DYNAMODB_READ_MS + DYNAMODB_WRITE_MS) / 1000
    return network + size * cpu_per_postback_s * LAMBDA_MB_PER_VCPU / memory_mb


def dispatch_gb_s_per_postback(
    batches: Mapping[str, Any], *, cpu_per_postback_s: float, memory_mb: int, size: float
) -> float:
    wall = dispatch_wall_s(batches, size, cpu_per_postback_s=cpu_per_postback_s, memory_mb=memory_mb)
    return wall * memory_mb / 1024 / size


def aws_call_figures() -> dict[str, Any]:
    env = worker_environment(
        ["ingest", "outbox", "dispatch"],
        extra={"ALLOW_LOOPBACK": "true", "POWERTOOLS_TRACE_DISABLED": "true"},
        stack=moto_stack(),
    )
    return run_worker("aws-calls", env, MOTO_STACK_NAME)


def access_log_bytes() -> int:
    """One API access log line (template.yaml's format) with typical values filled in."""
    resource = load_template()["Resources"]["ConversionApi"]["Properties"]
    line: str = resource["AccessLogSettings"]["Format"]
    typical = {
        "$context.requestId": "Bq1aXjQeliAEMkw=",
        "$context.identity.sourceIp": "198.51.100.7",
        "$context.requestTime": "26/Nov/2026:02:00:00 +0000",
        "$context.httpMethod": "POST",
        "$context.path": "/conversions",
        "$context.status": "202",
        "$context.responseLength": "180",
        "$context.responseLatency": "25",
        "$context.integrationErrorMessage": "-",
    }
    for name in sorted(typical, key=len, reverse=True):
        line = line.replace(name, typical[name])
    return len(line.encode()) + 1


def e2e_choices(*, seconds: float, rate: float, rounds: int) -> dict[str, Any]:
    """The local stack under the same load with each batching choice (bench.bill.CHOICES), the
    choices interleaved round by round (a noisy minute hurts them alike); per choice the run
    with the median p50."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in bill.CHOICES}
    for _ in range(rounds):
        for name, (parameters, serial) in bill.CHOICES.items():
            _say(f"bench:   {name} ...")
            run = e2e_load.measure(seconds=seconds, rate=rate, parameters=parameters, serial_dynamodb=serial)
            run["load_average"] = [round(x, 2) for x in os.getloadavg()]
            runs[name].append(run)
    chosen: dict[str, Any] = {}
    for name, results in runs.items():
        ordered = sorted(results, key=lambda r: r["latency_ms"]["p50"] or math.inf)
        chosen[name] = {**ordered[(len(ordered) - 1) // 2], "rounds": len(results)}
    return chosen


# --- the bill ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measured:
    """What the cost model takes from the measurements, for one kind of request."""

    per_request: int
    ingest_ms: float
    ingest_log_bytes: float  # the function's own lines per invocation, at the default level
    calls: Mapping[str, Any]


def _outbox_ms(size: float, sends: float, memory_mb: int) -> float:
    return size * OUTBOX_CPU_MS_PER_RECORD * LAMBDA_MB_PER_VCPU / memory_mb + SQS_SEND_MS * sends


class _Model:
    """Workloads for the cost model from the measurements and template.yaml's defaults: one
    conversion or 100 per request, full batches or batches as a monthly volume fills them, for
    any batching choice and front."""

    def __init__(self, warm: Mapping[str, Any], calls: Mapping[str, Any], batches: Mapping[str, Any]) -> None:
        template = load_template()
        self.defaults = bill.defaults(template)
        resources = template["Resources"]
        self.ingest_mb = int(resources["IngestFunction"]["Properties"]["MemorySize"])
        self.dispatch_mb = int(resources["DispatchFunction"]["Properties"]["MemorySize"])
        self.outbox_mb = int(
            resources.get("OutboxFunction", {}).get("Properties", {}).get("MemorySize", OUTBOX_MEMORY_MB_DEFAULT)
        )
        self.delivery_gsis = len(resources["DeliveriesTable"]["Properties"].get("GlobalSecondaryIndexes", []))
        self.batches = batches
        self.calls = calls
        f = warm["figures"]
        self.cpu_per_postback_s = f["dispatch_botocore"]["cpu_us"] / 10 / 1e6
        self.message_bytes = float(calls["postback_message_bytes"])
        # The conversion record carries its postbacks' messages (the outbox). Until ingest stops
        # sending to SQS itself, the measured record lacks them: their bytes are added.
        carries_messages = calls["ingest"]["sqs_sends"] == 0
        self.conversion_bytes = calls["conversion_item_bytes"] + (0 if carries_messages else self.message_bytes)
        # The functions' own lines at the template's default level (LogLevel): at WARNING the
        # metrics' EMF lines and warnings; at INFO a line per conversion batch and per postback too.
        at = (
            "log_bytes_per_invocation_at_warning"
            if self.defaults.log_level in ("WARNING", "ERROR")
            else ("log_bytes_per_invocation")
        )
        self.dispatch_log = f["dispatch_botocore"][at]
        self.access_log = access_log_bytes()
        access_group = resources.get("ApiAccessLogGroup", {}).get("Properties", {})
        self.access_log_infrequent = access_group.get("LogGroupClass") == "INFREQUENT_ACCESS"
        scale = LAMBDA_MB_PER_VCPU / self.ingest_mb
        self.requests: dict[str, _Measured] = {}
        for name, per_request, key, calls_key in (
            ("single", 1, "ingest_single_botocore", "ingest"),
            ("batch_of_100", 100, "ingest_batch_botocore", "ingest_batch_of_100"),
        ):
            ingest_calls = calls[calls_key]
            ingest_ms = (
                f[key]["cpu_us"] / 1000 * scale
                # A batch's puts run RECORD_WORKERS at a time: one round trip per wave.
                + DYNAMODB_WRITE_MS * math.ceil(ingest_calls["dynamodb_writes"] / RECORD_WORKERS)
                + SQS_SEND_MS * ingest_calls["sqs_sends"]
            )
            self.requests[name] = _Measured(per_request, ingest_ms, f[key][at], ingest_calls)

    def fills(
        self,
        request: str,
        conversions_per_month: float,
        *,
        outbox_window: float,
        dispatch_batch: int,
        dispatch_window: float,
        clumped: bool = True,
    ) -> tuple[float, float, float]:
        """(outbox batch, its SendMessageBatch calls, dispatcher batch) at a monthly volume."""
        d = self.defaults
        per_request = self.requests[request].per_request
        if per_request > 1:
            # A request's records reach the stream together: they fill a batch.
            size = float(min(d.outbox_batch, per_request))
            return (
                size,
                float(cost.sqs_requests_for_batch(round(size), self.message_bytes)),
                float(min(dispatch_batch, per_request)),
            )
        rate = cost.monthly_rate(conversions_per_month)
        outbox = cost.stream_batch(rate, outbox_window, d.outbox_batch)
        dispatch = cost.dispatch_batch(
            rate, dispatch_window, dispatch_batch, outbox_batch=outbox["size"], clumped=clumped
        )
        return outbox["size"], outbox["sends"], dispatch

    def workload(
        self,
        request: str,
        outbox_size: float,
        outbox_sends: float,
        dispatch_size: float,
        *,
        front: str = "http_api",
        traces_per_conversion: float = 0.0,
    ) -> cost.Workload:
        measured = self.requests[request]
        platform = PLATFORM_LOG_BYTES_PER_INVOCATION if self.defaults.platform_lines else 0
        access = self.access_log / measured.per_request if front == "http_api" else 0.0
        ingest_log = (measured.ingest_log_bytes + platform) / measured.per_request
        dispatch_log = (self.dispatch_log + platform) / dispatch_size
        # The outbox's own lines are not measured: taken as the dispatcher's (one EMF line a batch).
        outbox_log = (self.dispatch_log + platform) / outbox_size
        dispatch_ms = 1000 * dispatch_wall_s(
            self.batches, dispatch_size, cpu_per_postback_s=self.cpu_per_postback_s, memory_mb=self.dispatch_mb
        )
        per_postback = self.calls["dispatch"]
        return cost.Workload(
            conversions_per_request=measured.per_request,
            ingest_ms=round(measured.ingest_ms, 1),
            ingest_memory_mb=self.ingest_mb,
            outbox_batch_size=outbox_size,
            outbox_ms_per_batch=round(_outbox_ms(outbox_size, outbox_sends, self.outbox_mb), 1),
            outbox_memory_mb=self.outbox_mb,
            outbox_sends_per_batch=outbox_sends,
            message_bytes=self.message_bytes,
            dispatch_batch_size=dispatch_size,
            dispatch_ms_per_batch=round(dispatch_ms, 1),
            dispatch_memory_mb=self.dispatch_mb,
            conversion_item_kb=self.conversion_bytes / 1024,
            delivery_item_kb=self.calls["delivery_item_bytes"] / 1024,
            dynamodb_writes_per_conversion=round(measured.calls["dynamodb_writes"] / measured.per_request),
            dynamodb_reads_per_conversion=measured.calls["dynamodb_reads"] / measured.per_request,
            dynamodb_writes_per_postback=per_postback["dynamodb_writes"],
            dynamodb_reads_per_postback=per_postback["dynamodb_reads"],
            delivery_gsi_count=self.delivery_gsis,
            log_bytes_per_conversion=round(
                ingest_log + outbox_log + dispatch_log + (0.0 if self.access_log_infrequent else access), 1
            ),
            log_bytes_infrequent_per_conversion=round(access, 1) if self.access_log_infrequent else 0.0,
            xray_traces_per_conversion=traces_per_conversion,
            front=front,
        )

    def at_volume(
        self,
        conversions_per_month: float,
        *,
        front: str = "http_api",
        overrides: Mapping[str, str] | None = None,
        clumped: bool = True,
        tracing: str | None = None,
    ) -> cost.Workload:
        """One conversion per request at a monthly volume, with the defaults or `overrides`
        (template parameters); X-Ray as `tracing` (the default's TracingMode if None)."""
        d, o = self.defaults, overrides or {}
        outbox_window = float(o.get("OutboxBatchingWindowSeconds", d.outbox_window_s))
        dispatch_batch = int(o.get("DispatchBatchSize", d.dispatch_batch))
        dispatch_window = float(o.get("DispatchBatchingWindowSeconds", d.dispatch_window_s))
        outbox, sends, dispatch = self.fills(
            "single",
            conversions_per_month,
            outbox_window=outbox_window,
            dispatch_batch=dispatch_batch,
            dispatch_window=dispatch_window,
            clumped=clumped,
        )
        workload = self.workload("single", outbox, sends, dispatch, front=front)
        if (tracing or d.tracing_mode) == "Active":
            workload = replace(
                workload, xray_traces_per_conversion=_traces_per_conversion(workload, conversions_per_month)
            )
        return workload


def workloads(model: _Model) -> dict[str, cost.Workload]:
    """The cost model's inputs: one-conversion and 100-conversion requests, full batches and
    batches as arrivals at each monthly volume fill them, at the template's defaults."""
    d = model.defaults
    out: dict[str, cost.Workload] = {}
    for name in model.requests:
        full_sends = float(cost.sqs_requests_for_batch(d.outbox_batch, model.message_bytes))
        out[name] = model.workload(name, float(d.outbox_batch), full_sends, float(d.dispatch_batch))
        for volume, conversions in MONTHLY_VOLUMES.items():
            outbox, sends, dispatch = model.fills(
                name,
                conversions,
                outbox_window=d.outbox_window_s,
                dispatch_batch=d.dispatch_batch,
                dispatch_window=d.dispatch_window_s,
            )
            out[f"{name}_fill_{volume}"] = model.workload(name, outbox, sends, dispatch)
    return out


def _front(overrides: Mapping[str, str]) -> str:
    return "function_url" if overrides.get("IngestFront") == "FunctionUrl" else "http_api"


def whole_bills(model: _Model) -> dict[str, Any]:
    """The whole bill per million conversions at the template's defaults (request path, logs,
    X-Ray as TracingMode sets it), one conversion per request, batches as each monthly volume
    fills them, for each front; the fixed monthly costs and the tables' storage apart; and each
    batching choice priced the same way (HTTP API)."""
    d = model.defaults
    region = cost.REGION
    fronts = {"http_api": "http_api", "function_url": "function_url"}
    whole: dict[str, dict[str, float]] = {}
    lines: dict[str, dict[str, dict[str, float]]] = {}
    for key, front in fronts.items():
        whole[key], lines[key] = {}, {}
        for volume, conversions in MONTHLY_VOLUMES.items():
            priced = cost.cost_per_million(model.at_volume(conversions, front=front), region)
            whole[key][volume] = priced["total"]
            lines[key][volume] = priced
    pessimistic = {
        volume: cost.cost_per_million(model.at_volume(conversions, clumped=False), region)["total"]
        for volume, conversions in MONTHLY_VOLUMES.items()
    }
    traced = {
        volume: cost.cost_per_million(model.at_volume(conversions, tracing="Active"), region)["total"]
        for volume, conversions in MONTHLY_VOLUMES.items()
    }
    choices = {
        name: {
            volume: cost.cost_per_million(
                model.at_volume(conversions, overrides=overrides, front=_front(overrides)), region
            )["total"]
            for volume, conversions in MONTHLY_VOLUMES.items()
        }
        for name, (overrides, _serial) in bill.CHOICES.items()
    }
    fixed = cost.fixed_monthly(
        alarms=d.alarms, dashboards=d.dashboards, custom_metrics=d.custom_metrics, secrets=d.secrets, region=region
    )
    storage = {
        volume: cost.storage_monthly(
            conversions,
            conversion_bytes=model.conversion_bytes,
            conversion_days=CONVERSION_TTL_DAYS,
            delivery_bytes=float(model.calls["delivery_item_bytes"]),
            delivery_days=DELIVERY_TTL_DAYS,
            region=region,
        )
        for volume, conversions in MONTHLY_VOLUMES.items()
    }
    return {
        "whole_bill_per_million_usd": whole,
        "lines": lines,
        "if_pollers_split_every_send_http_api": pessimistic,
        "with_tracing_active_http_api": traced,
        "choices": choices,
        "fixed_monthly_usd": fixed,
        "fixed_per_million_usd": {
            volume: round(fixed["total"] / (conversions / 1e6), 4) for volume, conversions in MONTHLY_VOLUMES.items()
        },
        "storage_monthly_usd_at_steady_state": storage,
        "defaults": asdict(d),
        "price_pages": {**cost.PRICE_PAGES, **cost.FIXED_PRICE_PAGES},
        "prices_as_of": cost.PRICES_AS_OF,
    }


def _traces_per_conversion(workload: cost.Workload, monthly: float) -> float:
    """X-Ray with `TracingMode=Active` and the default sampling rule, per function."""
    invocations = (
        monthly / workload.conversions_per_request,
        monthly / workload.outbox_batch_size if workload.outbox_batch_size else 0.0,
        monthly / workload.dispatch_batch_size,
    )
    return sum(cost.xray_traces(i, SECONDS_PER_MONTH) for i in invocations) / monthly


def bills(per_run: Mapping[str, cost.Workload], monthly: float) -> dict[str, Any]:
    """Every workload priced in both regions: without observability (`request_path`), with
    CloudWatch Logs at WARNING (`with_logs`) and with X-Ray Active as well (`total`)."""
    out: dict[str, Any] = {}
    for region in REGIONS:
        for name, workload in per_run.items():
            bare = cost.cost_per_million(replace(workload, log_bytes_per_conversion=0.0), region)
            logged = cost.cost_per_million(workload, region)
            traced = cost.cost_per_million(
                replace(workload, xray_traces_per_conversion=_traces_per_conversion(workload, monthly)), region
            )
            out[f"{region}/{name}"] = {**bare, "with_logs": logged["total"], "total": traced["total"]}
        before = cost.before_issue_13(per_run["single"])
        out[f"{region}/single_before_issue_13"] = cost.cost_per_million(before, region)
    return out


def cost_assumptions(monthly: float, dispatch: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prices": f"list prices of {', '.join(REGIONS)} as of {cost.PRICES_AS_OF}, no free tier "
        "(bench/cost.py PRICE_PAGES names each page)",
        "cpu": f"Lambda CPU share = memory / {LAMBDA_MB_PER_VCPU} MB per vCPU; one Graviton2 vCPU taken as one core "
        "of this machine; a handler's warm CPU time here (real adapters and botocore, AWS answered in memory) "
        "is multiplied by 1769 / its MemorySize",
        "network": f"added, not scaled: DynamoDB write {DYNAMODB_WRITE_MS} ms per wave of ingest puts (a "
        f"batch's puts run {RECORD_WORKERS} at a time), SQS SendMessageBatch {SQS_SEND_MS} ms each; the dispatcher "
        f"waits for the affiliates as measured (servers answering in 50-200 ms) plus one DynamoDB read "
        f"({DYNAMODB_READ_MS} ms) and one write ({DYNAMODB_WRITE_MS} ms)",
        "outbox": f"not measured here: {OUTBOX_CPU_MS_PER_RECORD} ms CPU per stream record on this machine, scaled "
        "by its memory, plus one SendMessageBatch round trip per 10 messages; the stream's GetRecords by a "
        "Lambda trigger are free",
        "dispatch": f"BatchSize and MemorySize from template.yaml; GB-s per postback at the template's batch "
        f"size: {dispatch.get('gb_s_per_postback')}; one ReceiveMessage and one DeleteMessageBatch per 10 "
        "messages of a batch (each takes at most 10); "
        "no empty receives; every postback delivered at the first attempt; one postback per conversion",
        "fill": "full: every batch at its BatchSize. fill_1m / fill_10m: conversions spread evenly over a 30-day "
        "month (0.39/s, 3.9/s), arriving as a Poisson process; a batch is the record that opens the batching "
        "window and those that arrive within it, capped at BatchSize (cost.expected_batch, exact over the "
        "Poisson distribution). Optimistic: one stream shard and one SQS poller see every arrival (more "
        "shards or pollers split them into smaller batches). Requests of 100 conversions fill their batches.",
        "dynamodb": "items measured after one attempt (attribute names + values); the conversion record "
        "carries its postbacks' messages; the delivery log has no index; one consistent read (one read "
        "unit, item under 4 KB) before each send; on-demand, standard table class",
        "logs": f"CloudWatch Logs at the production level (WARNING): what the handlers print at WARNING "
        f"(measured: warnings, errors and the metrics' EMF lines) + {PLATFORM_LOG_BYTES_PER_INVOCATION} bytes of "
        "platform lines per invocation + one API access log line per request",
        "xray": f"Tracing: Active, default sampling (first request each second, 5% of the rest) per function, "
        f"{monthly:,.0f} conversions spread evenly over a 30-day month",
    }


# --- the table --------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def cold_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "target": f"cold import {name} <= {COLD_IMPORT_MAX_RATIO}x import boto3",
            "value": f"{ratio}x",
            "pass": ratio <= COLD_IMPORT_MAX_RATIO,
        }
        for name, ratio in results["cold_import_ratio"].items()
    ]


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = cold_targets(results)
    ingest = results["aws_calls_per_conversion"]["ingest"]
    batch = results["aws_calls_per_conversion"]["ingest_batch_of_100"]  # per conversion
    rows.append(
        {
            "target": "ingest warm: 0 DynamoDB reads, 1 write, 0 SQS calls per conversion",
            "value": f"single {ingest['dynamodb_reads']}r/{ingest['dynamodb_writes']}w/{ingest['sqs_sends']}s; "
            f"batch of 100 per conversion {batch['dynamodb_reads']:g}r/{batch['dynamodb_writes']:g}w/"
            f"{batch['sqs_sends']:g}s",
            "pass": ingest["dynamodb_reads"] == 0
            and ingest["dynamodb_writes"] == 1
            and ingest["sqs_sends"] == 0
            and ingest["other"] == 0
            and batch["dynamodb_reads"] == 0
            and batch["dynamodb_writes"] == 1
            and batch["sqs_sends"] == 0
            and batch["other"] == 0,
        }
    )
    outbox = results["aws_calls_per_conversion"]["outbox_batch_of_100"]  # per conversion
    rows.append(
        {
            "target": "outbox: 1 SendMessageBatch per 10 postbacks, nothing else",
            "value": f"stream batch of 100, per conversion {outbox['dynamodb_reads']:g}r/"
            f"{outbox['dynamodb_writes']:g}w/{outbox['sqs_sends']:g}s",
            "pass": outbox["sqs_sends"] <= 0.1 and outbox["dynamodb_reads"] == outbox["dynamodb_writes"] == 0,
        }
    )
    ratio = results["dispatch_concurrency_ratio"]
    rows.append(
        {
            "target": f"dispatch concurrency ratio <= {CONCURRENCY_MAX_RATIO}",
            "value": str(ratio),
            "pass": ratio <= CONCURRENCY_MAX_RATIO,
        }
    )
    rows.append(
        {
            "target": f"isolation (9 fast beside 1 dead) < {ISOLATION_MAX_S:g} s",
            "value": f"{results['isolation_s']} s",
            "pass": results["isolation_s"] < ISOLATION_MAX_S,
        }
    )
    e2e = results.get("local_e2e") or {}
    if e2e:
        rows.append(
            {
                "target": "local e2e: sustained load with 0 errors",
                "value": f"{e2e['sustained_conversions_per_s']}/s for {e2e['seconds']:g} s, {e2e['errors']} errors",
                "pass": e2e["errors"] == 0,
            }
        )
    # The issue's scope: API Gateway, Lambda, SQS and DynamoDB (Step Functions excluded),
    # eu-west-1, one conversion per request, full batches.
    path = results["cost_per_million_usd"]
    fill = results["cost_per_million_usd_realistic_fill"]
    rows.append(
        {
            "target": f"cost per million <= ${COST_MAX_USD:.2f} (eu-west-1, 1 per request, full batches)",
            "value": f"${path:.2f} (fill at 1M/10M a month ${fill['1m']:.2f}/${fill['10m']:.2f}; "
            f"with logs ${results['cost_per_million_with_logs_usd']:.2f})",
            "pass": path <= COST_MAX_USD,
        }
    )
    if e2e:
        p50, p99 = e2e["latency_ms"]["p50"], e2e["latency_ms"]["p99"]
        rows.append(
            {
                "target": f"local e2e at the defaults: POST -> affiliate p50 <= {LATENCY_P50_MAX_MS:,.0f} ms, "
                f"p99 <= {LATENCY_P99_MAX_MS:,.0f} ms, 0 errors",
                "value": f"p50 {p50} ms, p99 {p99} ms, {e2e['errors']} errors at {e2e['target_rate_per_s']:g}/s",
                "pass": p50 is not None
                and p99 is not None
                and p50 <= LATENCY_P50_MAX_MS
                and p99 <= LATENCY_P99_MAX_MS
                and e2e["errors"] == 0,
            }
        )
    whole = results["whole_bill_per_million_usd"]
    for front, most in WHOLE_BILL_MAX_USD.items():
        value = whole[front]["10m"]
        rows.append(
            {
                "target": f"whole default bill at 10 M a month, {front} <= ${most:.2f} per million",
                "value": f"${value:.2f} (1 M ${whole[front]['1m']:.2f}, 100 M ${whole[front]['100m']:.2f})",
                "pass": value <= most,
            }
        )
    return rows


def _bill_rows(results: Mapping[str, Any], row: Callable[[str, object], None]) -> None:
    """The whole default bill, the fixed and kept costs apart, and each batching choice's
    latency (local, 20/s) beside its bill."""
    whole = results["bill"]

    def by_volume(figures: Mapping[str, float]) -> str:
        return " / ".join(f"{figures[v]:.2f}" for v in MONTHLY_VOLUMES)

    volumes = " / ".join(MONTHLY_VOLUMES)
    for front, figures in whole["whole_bill_per_million_usd"].items():
        row(f"whole default bill per million, {front} ({volumes})", by_volume(figures))
    row("  if Lambda's pollers split every send", by_volume(whole["if_pollers_split_every_send_http_api"]))
    row("  with TracingMode=Active (default sampling)", by_volume(whole["with_tracing_active_http_api"]))
    fixed = whole["fixed_monthly_usd"]
    row(
        "fixed a month (alarms, dashboard, metrics, secret, polls)",
        f"${fixed['total']:.2f}: " + ", ".join(f"{k} {v:.2f}" for k, v in fixed.items() if k != "total"),
    )
    row(f"  the same per million ({volumes})", by_volume(whole["fixed_per_million_usd"]))
    storage = whole["storage_monthly_usd_at_steady_state"]
    row(
        f"DynamoDB storage + PITR a month, kept items ({volumes})",
        " / ".join(f"${storage[v]['total']:.2f} ({storage[v]['gb']:.1f} GB)" for v in MONTHLY_VOLUMES),
    )
    choices = results.get("local_e2e_choices") or {}
    for name, bill_figures in whole["choices"].items():
        run = choices.get(name) or {}
        latency = run.get("latency_ms") or {}
        row(
            f"choice: {name}"[:52],
            f"p50/p99 {latency.get('p50')}/{latency.get('p99')} ms, {run.get('errors', '-')} errors; "
            f"bill {by_volume(bill_figures)}",
        )


def table(results: Mapping[str, Any]) -> str:
    lines: list[str] = []

    def row(label: str, value: object) -> None:
        lines.append(f"  {label:<52} {value}")

    lines.append("postback relay benchmark  (" + results["machine"]["summary"] + ")")
    lines.append("")
    row("import boto3 (ms, median)", results["boto3_import_ms"])
    for name, ms in results["cold_import_ms"].items():
        row(f"cold import {name} (ms, ratio to boto3)", f"{ms}  ({results['cold_import_ratio'][name]}x)")
    for name, figures in results["first_invocation"].items():
        row(
            f"first invocation {name} (ms: import + first call)",
            f"{figures['first_invocation_ms']}  ({figures['import_ms']} + {figures['first_call_ms']}; "
            f"second call {figures['second_call_ms']})",
        )
    row(
        "  in the dev venv: boto3 / ingest / dispatch (ms)",
        f"{results['dev_venv_boto3_import_ms']} / {results['dev_venv_cold_import_ms']['ingest']} / "
        f"{results['dev_venv_cold_import_ms']['dispatch']}",
    )
    ingest = results["ingest_us_per_conversion"]
    row("ingest warm, 1 conversion/request (us/conversion)", ingest["single"])
    row("ingest warm, batch of 100 (us/conversion)", ingest["batch_of_100"])
    row("dispatch warm, batch of 10 (us/postback)", results["dispatch_us_per_postback"])
    botocore = results["warm_with_botocore_us"]
    row(
        "  same with real clients, AWS in memory (cpu us)",
        f"ingest {botocore['ingest_single']} / batch {botocore['ingest_batch_of_100_per_conversion']} "
        f"per conversion, dispatch {botocore['dispatch_per_postback']} per postback",
    )
    for path, kinds in results["aws_calls_per_conversion"].items():
        if path.endswith("first_invocation"):
            continue
        shown = ", ".join(f"{k} {v}" for k, v in kinds.items() if k != "calls")
        row(f"AWS calls per conversion: {path}", shown)
    row("dispatch concurrency ratio (10 x 200 ms)", results["dispatch_concurrency_ratio"])
    row(
        "isolation: 9 fast beside 1 dead (s)",
        f"{results['isolation_s']}  (whole batch {results['isolation_whole_batch_s']} s)",
    )
    e2e = results.get("local_e2e") or {}
    if e2e:
        row(
            "local e2e sustained (conversions/s, errors)",
            f"{e2e['sustained_conversions_per_s']} (target {e2e['target_rate_per_s']:g}/s), {e2e['errors']} errors",
        )
        row("local e2e POST -> postback p50 / p99 (ms)", f"{e2e['latency_ms']['p50']} / {e2e['latency_ms']['p99']}")
    for name, mb in results["peak_rss_mb"].items():
        row(f"peak RSS {name} (MB)", mb)
    row("ConversionsTable / DeliveriesTable item (bytes)", f"{results['item_bytes']}")
    top = results["one_affiliate_ceiling"]
    row(
        "one affiliate, largest item: WCU/attempt; postbacks/s unsharded / with "
        f"{top['delivery_shards']} shards (max_postbacks_per_s_one_affiliate)",
        f"{top['wcu_per_attempt_largest_item']}; {top['max_postbacks_per_s_one_affiliate_unsharded']} / "
        f"{results['max_postbacks_per_s_one_affiliate']}",
    )
    if "portal" in results:
        lines.extend(portal_rows(results["portal"]))
    gb_s = results["dispatch_gb_s_per_postback"]
    row(
        "dispatch GB-s per postback (batch size: GB-s)",
        ", ".join(f"{size}: {value:.5f}" for size, value in gb_s["by_batch_size"].items())
        + f"  (template: {gb_s['batch_size']} at {gb_s['memory_mb']} MB)",
    )
    by_region = results["cost"]["by_region"]
    for region in REGIONS:
        single, batch = by_region[f"{region}/single"], by_region[f"{region}/batch_of_100"]
        fill_1m, fill_10m = by_region[f"{region}/single_fill_1m"], by_region[f"{region}/single_fill_10m"]
        before = by_region[f"{region}/single_before_issue_13"]
        row(
            f"cost per million {region}, API+Lambda+SQS+DynamoDB",
            f"{single['request_path']:.2f}  (batch of 100: {batch['request_path']:.2f}; before issue 13: "
            f"{before['request_path']:.2f})",
        )
        row(
            "  realistic fill at 1M / 10M a month",
            f"{fill_1m['request_path']:.2f} / {fill_10m['request_path']:.2f}  (batch of 100: "
            f"{by_region[f'{region}/batch_of_100_fill_1m']['request_path']:.2f} / "
            f"{by_region[f'{region}/batch_of_100_fill_10m']['request_path']:.2f})",
        )
        row(
            "  with CloudWatch Logs (WARNING) / and X-Ray",
            f"{single['with_logs']:.2f} / {single['total']:.2f}  (fill at 1M: {fill_1m['with_logs']:.2f} / "
            f"{fill_1m['total']:.2f})",
        )
    single, batch = by_region["eu-west-1/single"], by_region["eu-west-1/batch_of_100"]
    for line in ("api_gateway", "lambda_requests", "lambda_duration", "sqs", "dynamodb", "dynamodb_streams"):
        row(f"  eu-west-1 {line}", f"{single[line]:.3f}  (batch of 100: {batch[line]:.3f})")
    _bill_rows(results, row)
    retries = results.get("retries") or {}
    if retries:
        average = retries["cost"]["usd_per_million_retries_whole_schedule_average"]
        row(
            "cost per million retries, the wait (USD): built / sched / ddb",
            f"{average['chained_hops']:.2f} / {average['eventbridge_scheduler']:.2f} / "
            f"{average['dynamodb_sweeper']:.2f}  (chained hops / EventBridge Scheduler / DynamoDB sweeper)",
        )
        flight = retries["in_flight"]
        row(
            f"in-flight peak, {flight['postbacks']} postbacks waiting",
            f"{flight['built']['in_flight_peak']} (bound {flight['bound']}; "
            f"copies refused, as before: {flight['copies_refused']['in_flight_peak']})",
        )
    lines.append("")
    lines.append("targets")
    for target in results["targets"]:
        lines.append(f"  {_verdict(target['pass'])}  {target['target']:<75} {target['value']}")
    return "\n".join(lines)


def portal_rows(portal: Mapping[str, Any]) -> list[str]:
    """The portal's warm pages (bench.portal_page): on fakes (its own cost) and on moto."""
    lines: list[str] = []

    def row(label: str, value: object) -> None:
        lines.append(f"  {label:<52} {value}")

    def spread(figure: Mapping[str, Any]) -> str:
        return f"{figure['median']} / {figure['p95']}"

    fakes = portal.get("fakes", {}).get("pages", {})
    for kind in portal_page.KINDS:
        if kind in fakes:
            row(
                f"portal {kind}, fakes (ms median / p95; CPU)",
                f"{spread(fakes[kind]['wall'])}; {fakes[kind]['cpu']['median']}",
            )
    if "home" in fakes:
        row("  of which the Jinja2 render (home)", spread(fakes["home"]["render"]))
    moto = portal.get("moto", {})
    if "home" in moto.get("pages", {}):
        home = moto["pages"]["home"]
        calls = ", ".join(f"{n} {name}" for name, n in sorted(moto["aws_calls_per_page"]["home"].items()))
        row(
            "portal home on moto: wall / moto's share / rest (CPU)",
            f"{home['wall']['median']} / {home['moto']['median']} / {home['wall_without_moto']['median']} ms "
            f"({home['cpu_without_moto']['median']})",
        )
        row("  AWS calls per home page", calls)
        estimate = portal["warm_page"]["home_estimate_on_lambda"]
        row(
            f"  home on Lambda at {estimate['memory_mb']} MB, estimate (ms)",
            f"{estimate['ms']} (CPU {estimate['cpu_ms_scaled']} + {estimate['dynamodb_calls']} DynamoDB calls "
            f"{estimate['dynamodb_ms']:g})",
        )
    return lines


# --- the run ------------------------------------------------------------------------------------


def _quiet(part: Callable[[], Any]) -> Callable[[], Any]:
    """The dispatcher logs every retry; the benchmark's own output is what matters here."""

    def run() -> Any:
        logging.disable(logging.WARNING)
        try:
            return part()
        finally:
            logging.disable(logging.NOTSET)

    return run


def _timed_part(name: str, part: Callable[[], Any]) -> Any:
    _say(f"bench: {name} ...")
    started = time.monotonic()
    value = part()
    _say(f"bench: {name} done in {time.monotonic() - started:.0f} s")
    return value


def main() -> int:
    started = time.monotonic()
    repeats = int(_env_float("BENCH_REPEATS", 3))
    e2e_seconds = _env_float("BENCH_E2E_SECONDS", 60)
    e2e_rate = _env_float("BENCH_E2E_RATE", 20)
    e2e_rounds = int(_env_float("BENCH_E2E_ROUNDS", 1))
    monthly = _env_float("BENCH_MONTHLY_CONVERSIONS", 1_000_000)

    cold = _timed_part("cold import", lambda: cold_import.measure(repeats=7))
    cold_venv = _timed_part("cold import in the dev venv", lambda: cold_import.measure_dev_venv(repeats=5))
    first = _timed_part("first invocation", lambda: cold_import.measure_first_invocation(repeats=5))
    warm = _timed_part("warm handlers", lambda: warm_figures(repeats))
    concurrency = _timed_part("dispatch concurrency and isolation", concurrency_figures)
    calls = _timed_part("AWS calls on moto", aws_call_figures)
    batches = _timed_part("dispatch batch sizes", dispatch_batch_figures)
    choices = (
        _timed_part(
            f"local stack under load, {len(bill.CHOICES)} batching choices x {e2e_rounds}",
            lambda: e2e_choices(seconds=e2e_seconds, rate=e2e_rate, rounds=e2e_rounds),
        )
        if e2e_seconds > 0
        else {}
    )
    e2e = choices.get(bill.DEFAULTS, {})

    waiting = _timed_part("waits: in-flight peak on moto", _quiet(waits.in_flight_peak))
    top = _timed_part("one affiliate's ceiling on moto", ceiling.measure)

    f = warm["figures"]
    model = _Model(warm, calls, batches)
    per_run = workloads(model)
    priced = bills(per_run, monthly)
    whole = whole_bills(model)
    eu = {name.removeprefix("eu-west-1/"): bill for name, bill in priced.items() if name.startswith("eu-west-1/")}
    dispatch = per_run["single"]
    cpu_per_postback_s = f["dispatch_botocore"]["cpu_us"] / 10 / 1e6
    gb_s = {
        "batch_size": round(dispatch.dispatch_batch_size),
        "memory_mb": dispatch.dispatch_memory_mb,
        "gb_s_per_postback": round(
            dispatch_gb_s_per_postback(
                batches,
                cpu_per_postback_s=cpu_per_postback_s,
                memory_mb=dispatch.dispatch_memory_mb,
                size=dispatch.dispatch_batch_size,
            ),
            6,
        ),
        "by_batch_size": {
            str(size): round(
                dispatch_gb_s_per_postback(
                    batches, cpu_per_postback_s=cpu_per_postback_s, memory_mb=dispatch.dispatch_memory_mb, size=size
                ),
                6,
            )
            for size in DISPATCH_BATCH_SIZES
        },
        "by_memory_mb_at_template_batch": {
            str(mb): round(
                dispatch_gb_s_per_postback(
                    batches, cpu_per_postback_s=cpu_per_postback_s, memory_mb=mb, size=dispatch.dispatch_batch_size
                ),
                6,
            )
            for mb in (128, 256, 512, 1024)
        },
        "measured": batches,
        "method": "warm dispatch batches against loopback servers answering in 50-200 ms (bench.worker "
        "dispatch-batch-sizes): the wait for the affiliates (wall less CPU) + one DynamoDB read and write round "
        "trip + the real clients' CPU per postback scaled to the memory's vCPU share, times the memory, over "
        "the batch size",
    }
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "summary": f"{platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.1f}, Python "
            f"{platform.python_version()}",
            "cpus": os.cpu_count(),
            "load_average": load,
            "python": sys.version,
        },
        **cold,
        **cold_venv,
        **first,
        "ingest_us_per_conversion": {
            "single": f["ingest_single_fakes"]["wall_us"],
            "batch_of_100": round(f["ingest_batch_fakes"]["wall_us"] / 100, 1),
        },
        "dispatch_us_per_postback": round(f["dispatch_fakes"]["wall_us"] / 10, 1),
        "warm_with_botocore_us": {
            "ingest_single": f["ingest_single_botocore"]["cpu_us"],
            "ingest_batch_of_100_per_conversion": round(f["ingest_batch_botocore"]["cpu_us"] / 100, 1),
            "dispatch_per_postback": round(f["dispatch_botocore"]["cpu_us"] / 10, 1),
        },
        "warm_figures": f,
        "aws_calls_per_conversion": {
            "ingest": _kinds(calls["ingest"]),
            "outbox": _kinds(calls["outbox"]),
            "dispatch": _kinds(calls["dispatch"]),
            "ingest_batch_of_100": _kinds(calls["ingest_batch_of_100"], per=100),
            "outbox_batch_of_100": _kinds(calls["outbox_batch_of_100"], per=100),
            "dispatch_batch_of_100": _kinds(calls["dispatch_batch_of_100"], per=100),
            "ingest_first_invocation": _kinds(calls["ingest_first_invocation"]),
            "outbox_first_invocation": _kinds(calls["outbox_first_invocation"]),
            "dispatch_first_invocation": _kinds(calls["dispatch_first_invocation"]),
        },
        "item_bytes": {
            "conversion": calls["conversion_item_bytes"],
            "delivery": calls["delivery_item_bytes"],
            "postback_message": calls["postback_message_bytes"],
        },
        "dispatch_concurrency_ratio": concurrency["dispatch_concurrency_ratio"],
        "isolation_s": concurrency["isolation_s"],
        "isolation_whole_batch_s": concurrency["dead_endpoint_batch_s"],
        "concurrency_detail": concurrency,
        "local_e2e": e2e,
        "local_e2e_choices": choices,
        "whole_bill_per_million_usd": whole["whole_bill_per_million_usd"],
        "bill": whole,
        "peak_rss_mb": {
            "ingest": f["ingest_single_fakes"]["peak_rss_mb"],
            "ingest_batch_of_100": f["ingest_batch_fakes"]["peak_rss_mb"],
            "dispatch": f["dispatch_fakes"]["peak_rss_mb"],
            "ingest_with_boto3_clients": f["ingest_single_botocore"]["peak_rss_mb"],
            "dispatch_with_boto3_clients": f["dispatch_botocore"]["peak_rss_mb"],
        },
        "peak_rss_method": "each handler alone in a fresh process (forked from a small shell so ru_maxrss "
        "starts clean), driven warm for the invocations in warm_figures; peak = resource.getrusage "
        "ru_maxrss, cross-checked with /proc/self/status VmHWM; includes the interpreter (~15 MB) and the "
        "benchmark's fakes, as Lambda's Max Memory Used includes its runtime",
        "dispatch_gb_s_per_postback": gb_s,
        # API Gateway, Lambda, SQS and DynamoDB: what the benchmark's target covers (eu-west-1,
        # one conversion per request, full batches).
        "cost_per_million_usd": eu["single"]["request_path"],
        "cost_per_million_usd_batch_of_100": eu["batch_of_100"]["request_path"],
        "cost_per_million_usd_realistic_fill": {
            volume: eu[f"single_fill_{volume}"]["request_path"] for volume in MONTHLY_VOLUMES
        },
        "cost_per_million_usd_realistic_fill_batch_of_100": {
            volume: eu[f"batch_of_100_fill_{volume}"]["request_path"] for volume in MONTHLY_VOLUMES
        },
        "cost_per_million_usd_us_east_1": priced["us-east-1/single"]["request_path"],
        "cost_per_million_usd_before_issue_13": eu["single_before_issue_13"]["request_path"],
        "cost_per_million_with_logs_usd": eu["single"]["with_logs"],
        "cost_per_million_with_logs_and_traces_usd": eu["single"]["total"],
        "cost_per_million_with_logs_and_traces_usd_batch_of_100": eu["batch_of_100"]["total"],
        "cost": {
            "single": eu["single"],
            "batch_of_100": eu["batch_of_100"],
            "by_region": priced,
            "workloads": {name: cost.describe(w) for name, w in per_run.items()},
            "assumptions": cost_assumptions(monthly, gb_s),
        },
    }
    results["retries"] = {"cost": waits.retry_costs(), "in_flight": waiting}
    results["max_postbacks_per_s_one_affiliate"] = top["max_postbacks_per_s_one_affiliate"]
    results["one_affiliate_ceiling"] = top
    # The portal (issue 26): its cold import is a row of cold_import's; its warm pages here.
    results["portal"] = _timed_part("portal: warm pages", lambda: portal_page.measure(repeats=repeats))
    results["targets"] = targets(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    RESULTS_PATH.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    _say("")
    _say(table(results))
    _say("")
    _say(f"figures in {RESULTS_PATH} ({results['elapsed_s']:.0f} s)")
    return 0


def _kinds(calls: Mapping[str, Any], *, per: int = 1) -> dict[str, Any]:
    kinds = {k: v / per if per != 1 else v for k, v in calls.items() if k != "calls"}
    return {**kinds, "calls": calls["calls"]}


# --- `python -m bench cold`: the cold-start figures alone, before and after ---------------------

COLD_RESULTS_PATH = Path(__file__).resolve().parent / "cold_results.json"


def _warm_targets(warm: Mapping[str, Any]) -> dict[str, float]:
    f = warm["figures"]
    return {
        "ingest_us_per_conversion_single": f["ingest_single_fakes"]["wall_us"],
        "ingest_us_per_conversion_batch_of_100": round(f["ingest_batch_fakes"]["wall_us"] / 100, 1),
        "dispatch_us_per_postback": round(f["dispatch_fakes"]["wall_us"] / 10, 1),
    }


def cold_main(argv: list[str]) -> int:
    """Cold import and first invocation on the Lambda layout; with --against REF, the same for
    git REF's functions and layer code in the same rounds (interleaved), and with --warm the
    warm per-conversion figures of both too. Written to bench/cold_results.json."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench cold", description=cold_main.__doc__)
    parser.add_argument("--against", metavar="REF", help="a git ref to measure beside this tree (e.g. main)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds of cold imports (15)")
    parser.add_argument("--first-repeats", type=int, default=9, help="rounds of first invocations (9)")
    parser.add_argument("--warm", type=int, default=0, metavar="N", help="also N rounds of warm figures")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        baseline = cold_import.checkout(args.against, Path(tmp)) if args.against else None
        results: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
        results["against"] = args.against
        results.update(_timed_part("cold import", lambda: cold_import.measure(repeats=args.repeats, baseline=baseline)))
        results.update(
            _timed_part(
                "first invocation",
                lambda: cold_import.measure_first_invocation(repeats=args.first_repeats, baseline=baseline),
            )
        )
        if args.warm:
            rounds: dict[str, list[dict[str, float]]] = {"current": [], "baseline": []}
            only = ("ingest_single_fakes", "ingest_batch_fakes", "dispatch_fakes")
            for _ in range(args.warm):  # interleaved, one fresh process per figure and tree
                rounds["current"].append(_warm_targets(warm_figures(1, only=only)))
                if baseline is not None:
                    rounds["baseline"].append(_warm_targets(warm_figures(1, tree=baseline, only=only)))
            for tree, prefix in (("current", ""), ("baseline", "baseline_")):
                if rounds[tree]:
                    results[f"{prefix}warm"] = {key: _median([r[key] for r in rounds[tree]]) for key in rounds[tree][0]}
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    results["load_average"] = load
    _write_and_show(COLD_RESULTS_PATH, results, cold_table(results))
    return 0


def _write_and_show(path: Path, results: Mapping[str, Any], table: str) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    _say("")
    _say(table)
    _say(f"figures in {path}")


def cold_table(results: Mapping[str, Any]) -> str:
    has_baseline = "baseline_cold_import_ms" in results
    head = f"{'':<44} {'after':>16}" + (f" {'before (' + str(results['against']) + ')':>22}" if has_baseline else "")
    lines = [head]

    def row(label: str, after: object, before: object = "") -> None:
        lines.append(f"{label:<44} {after!s:>16}" + (f" {before!s:>22}" if has_baseline else ""))

    row("import boto3 (ms)", results["boto3_import_ms"], results["boto3_import_ms"])
    for name, ms in results["cold_import_ms"].items():
        before = ""
        if has_baseline and name in results["baseline_cold_import_ms"]:
            before = f"{results['baseline_cold_import_ms'][name]} ({results['baseline_cold_import_ratio'][name]}x)"
        row(f"cold import {name} (ms, ratio)", f"{ms} ({results['cold_import_ratio'][name]}x)", before)
    for name, figures in results["first_invocation"].items():
        old = results.get("baseline_first_invocation", {}).get(name, {})
        for key in ("first_invocation_ms", "import_ms", "first_call_ms", "second_call_ms"):
            row(f"{name} {key}", figures[key], old.get(key, ""))
    for key, value in results.get("warm", {}).items():
        row(key, value, results.get("baseline_warm", {}).get(key, ""))
    return "\n".join(lines)


# --- `python -m bench portal`: the portal's figures alone, with same-run comparisons -------------

PORTAL_RESULTS_PATH = Path(__file__).resolve().parent / "portal_results.json"


def portal_main(argv: list[str], *, out: Path = PORTAL_RESULTS_PATH) -> int:
    """The portal's cold import (with ingest's, against `import boto3`, in the same rounds) and
    its warm pages (with ingest's warm call, in the same rounds), as `make bench` measures them.
    Written to bench/portal_results.json under the keys bench/results.json uses."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench portal", description=portal_main.__doc__)
    parser.add_argument("--cold-repeats", type=int, default=7, help="interleaved rounds of cold imports (7; 0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of warm figures, fresh processes each (3)")
    parser.add_argument("--pages", type=int, default=30, help="warm requests of each page per process on fakes (30)")
    parser.add_argument("--moto-pages", type=int, default=10, help="the same on moto (10; 0: no moto run)")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench portal", *argv]),
    }
    if args.cold_repeats > 0:
        results.update(
            _timed_part(
                "cold import: boto3, ingest, portal",
                lambda: cold_import.measure(repeats=args.cold_repeats, functions=("ingest", "portal")),
            )
        )
    env = portal_page.worker_env()
    runs: dict[str, list[dict[str, Any]]] = {}
    ingest: list[dict[str, Any]] = []
    loads = [os.getloadavg()]
    for n in range(args.rounds):  # interleaved: a noisy minute hurts both alike
        _say(f"bench: warm round {n + 1}/{args.rounds}: ingest, portal on fakes, portal on moto ...")
        ingest.append(warm_figures(1, only=("ingest_single_fakes",))["figures"]["ingest_single_fakes"])
        portal_page.one_round(runs, env, pages=args.pages, moto_pages=args.moto_pages)
        loads.append(os.getloadavg())
    end = os.getloadavg()
    results["machine"] = {
        "summary": f"{platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.1f} to {end[0]:.1f}, Python "
        f"{platform.python_version()}",
        "load_average": {"start": load, "end": end},
    }
    results["ingest_us_per_conversion"] = {"single": _median([r["wall_us"] for r in ingest])}
    results["warm_figures"] = {"ingest_single_fakes_rounds": ingest}
    results["portal"] = portal_page.summarise(runs, load=loads)
    if "cold_import_ratio" in results:
        results["targets"] = cold_targets(results)
    _write_and_show(out, results, portal_table(results))
    return 0


def portal_table(results: Mapping[str, Any]) -> str:
    lines = [f"portal benchmark  ({results['machine']['summary']})", ""]

    def row(label: str, value: object) -> None:
        lines.append(f"  {label:<52} {value}")

    if "cold_import_ms" in results:
        row("import boto3 (ms, median; CPU ms)", f"{results['boto3_import_ms']}; {results['cpu_boto3_import_ms']}")
        for name, ms in results["cold_import_ms"].items():
            row(
                f"cold import {name} (ms, ratio to boto3; on CPU)",
                f"{ms}  ({results['cold_import_ratio'][name]}x; {results['cpu_cold_import_ratio'][name]}x)",
            )
    row("ingest warm, 1 conversion/request (us, same rounds)", results["ingest_us_per_conversion"]["single"])
    lines.extend(portal_rows(results["portal"]))
    for target in results.get("targets", []):
        lines.append(f"  {_verdict(target['pass'])}  {target['target']:<75} {target['value']}")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["cold"]:
        sys.exit(cold_main(sys.argv[2:]))
    if sys.argv[1:2] == ["portal"]:
        sys.exit(portal_main(sys.argv[2:]))
    sys.exit(main())
