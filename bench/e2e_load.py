"""Sustained load on the local stack (`make run`) over HTTP, loopback only.

The stack runs in its own process (`python -m postback_ops.local` on free ports, as the
end-to-end tests start it). A few client threads post signed conversions at a fixed target
rate for a bounded time (BENCH_E2E_SECONDS, 60 by default); every conversion fires one
postback to a receiver in this process. Latency is from the start of the POST to the
receiver's hit for that transaction. A non-2xx answer, a failed request and a postback that
never arrives are errors.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests

from bench.events import AFFILIATE_ID, affiliate_config_data, conversion
from postback_ops.local.conversions import signed_headers
from postback_ops.local.receiver import Hit, Receiver
from postback_ops.local.resources import LOCAL_REGION
from postback_ops.template import REPO_ROOT
from postback_relay import wiring
from postback_relay.domain.config import parse_config

READY_PREFIX = "local stack ready "
SECRET = "bench-local-secret"  # noqa: S105 - the local stack's secret for this run only
START_TIMEOUT_S = 120
DRAIN_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 10


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    errors: list[str] = field(default_factory=list)
    posted_at: dict[str, float] = field(default_factory=dict)  # transaction ID -> monotonic start
    started: float = 0.0  # when the first conversion was due
    last_answer: float = 0.0


class StackProcess:
    """`python -m postback_ops.local` on free ports; stopped with SIGTERM."""

    def __init__(self, *, parameters: Mapping[str, str] | None = None, serial_dynamodb: bool = True) -> None:
        env = {
            **os.environ,
            "POSTBACK_LOCAL_API_PORT": "0",
            "POSTBACK_LOCAL_AWS_PORT": "0",
            "POSTBACK_LOCAL_RECEIVER_PORT": "off",
            "POSTBACK_SIGNING_SECRET": SECRET,
            "PYTHONUNBUFFERED": "1",
            "POSTBACK_LOCAL_PARAMETER_OVERRIDES": " ".join(f"{k}={v}" for k, v in (parameters or {}).items()),
            "POSTBACK_LOCAL_DYNAMODB": "serial" if serial_dynamodb else "tables",
        }
        env.pop("AWS_ENDPOINT_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "postback_ops.local"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        self.details: dict[str, Any] = {}
        self.ready = threading.Event()
        self.tail: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.tail = [*self.tail[-30:], line.rstrip("\n")]
            if line.startswith(READY_PREFIX):
                self.details = json.loads(line[len(READY_PREFIX) :])
                self.ready.set()
        self.ready.set()

    def wait_ready(self) -> None:
        if not self.ready.wait(START_TIMEOUT_S) or not self.details:
            raise RuntimeError("the local stack did not start:\n" + "\n".join(self.tail))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)


def _onboard(aws_endpoint: str, table: str, receiver_url: str) -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url=aws_endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto's
    )
    store = wiring.affiliate_store(table, dynamodb=client, allow_loopback=True)
    store.put(
        parse_config(affiliate_config_data(receiver_url), allow_loopback=True),
        expected_version=None,
        updated_by="bench",
    )


def _load(api_url: str, rate: float, seconds: float, threads: int) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()
    total = int(rate * seconds)
    next_index = iter(range(total))
    start = time.monotonic() + 0.5
    result.started = start

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            due = start + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the fixed arrival schedule, not synchronisation
            transaction_id = f"E2E-BENCH-{index}"
            body = json.dumps(conversion(transaction_id, affiliate_id=AFFILIATE_ID)).encode()
            posted = time.monotonic()
            with lock:
                result.posted_at[transaction_id] = posted
                result.sent += 1
            try:
                answer = session.post(
                    f"{api_url}/conversions",
                    data=body,
                    headers=signed_headers(SECRET, body),
                    timeout=REQUEST_TIMEOUT_S,
                )
            except requests.RequestException as exc:
                with lock:
                    result.errors.append(f"{transaction_id}: {exc}")
                continue
            with lock:
                result.last_answer = max(result.last_answer, time.monotonic())
                if 200 <= answer.status_code < 300:
                    result.accepted += 1
                else:
                    result.errors.append(f"{transaction_id}: HTTP {answer.status_code} {answer.text[:120]}")

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + REQUEST_TIMEOUT_S + 30)
    return result


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def measure(
    *,
    seconds: float,
    rate: float,
    threads: int = 4,
    parameters: Mapping[str, str] | None = None,
    serial_dynamodb: bool = True,
) -> dict[str, Any]:
    """Run the stack (with these template parameters; DynamoDB one request at a time with
    `serial_dynamodb`), load it, and stop it again whatever happens."""
    arrived: dict[str, float] = {}
    arrived_lock = threading.Condition()

    def on_hit(hit: Hit) -> None:
        transaction_id = hit.param("tx")
        if transaction_id:
            with arrived_lock:
                arrived.setdefault(transaction_id, time.monotonic())
                arrived_lock.notify_all()

    stack = StackProcess(parameters=parameters, serial_dynamodb=serial_dynamodb)
    try:
        started = time.monotonic()
        stack.wait_ready()
        startup_s = time.monotonic() - started
        with Receiver(on_hit=on_hit) as receiver:
            _onboard(stack.details["aws_endpoint"], stack.details["outputs"]["AffiliatesTableName"], receiver.url)
            result = _load(stack.details["api_url"], rate, seconds, threads)
            load_s = result.last_answer - result.started
            with arrived_lock:
                arrived_lock.wait_for(lambda: len(arrived) >= result.accepted, timeout=DRAIN_TIMEOUT_S)
                hits = dict(arrived)
    finally:
        stack.stop()

    latencies = sorted(hits[t] - posted for t, posted in result.posted_at.items() if t in hits)
    lost = result.accepted - sum(1 for t in result.posted_at if t in hits)
    errors = len(result.errors) + max(0, lost)
    return {
        "seconds": seconds,
        "target_rate_per_s": rate,
        "client_threads": threads,
        "sent": result.sent,
        "accepted": result.accepted,
        "postbacks_received": len(hits),
        "errors": errors,
        "error_samples": result.errors[:5],
        "sustained_conversions_per_s": round(result.accepted / load_s, 1) if load_s else 0.0,
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99": round(_percentile(latencies, 0.99) * 1000, 1) if latencies else None,
            "max": round(latencies[-1] * 1000, 1) if latencies else None,
        },
        "stack_startup_s": round(startup_s, 1),
        "parameters": dict(parameters or {}),
        "dynamodb_one_request_at_a_time": serial_dynamodb,
    }
