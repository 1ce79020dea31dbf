"""The portal's warm page time (issue 26), measured as the other functions' warm calls are.

Each run is a fresh process (`python -m bench.worker portal-warm N MODE`) that imports the
portal handler with its Lambda environment and calls `lambda_handler` with HTTP API events of
an affiliate that has two postbacks and 50 deliveries (40 delivered, 6 failed, 4 retrying):

- `home`: GET /portal/home, the main page (config, the postbacks' edit form, the test link,
  the 50 deliveries, the health row);
- `preview`: POST /portal/preview, the request the edit form makes as soon as it is shown and
  on every change (the URL a sample conversion gives for each postback, through the one
  render path);
- `edit_with_preview`: the two together, what a browser waits for to show the edit form with
  its preview;
- `refused_save`: POST /portal/postbacks with a URL the config refuses: the edit page again
  (status 400), with the field's problem.

MODE `fakes` (the portal's own cost, as ingest's and dispatch's warm figures): the service
built by the wiring's PortalService over in-memory fakes of its ports, handed to the handler
through its seam (`portal_service.use`). MODE `moto`: the function's own service, adapters
and boto3 clients against moto in the same process; the time spent inside moto's answer
(its `before-send` hook, timed per call) is reported, and subtracted: what remains is the
portal, its adapters and botocore, without DynamoDB. Neither includes DynamoDB's round trips
(about 5 ms each in-region, `aws_calls_per_page` of them).

The Jinja2 render (`portal_web.page`, as the routes call it) is timed inside the same requests
and reported apart. The first request of a process (Jinja2 imported, templates compiled, the
clients built) is reported apart too and left out of the warm figures.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from bench import cost

AFFILIATE_ID = "1234567"
DELIVERIES = 50
DYNAMODB_READ_MS = 5.0  # an in-region DynamoDB round trip, p50 (as bench.__main__ assumes)
LAMBDA_MB_PER_VCPU = cost.LAMBDA_MB_PER_VCPU
KINDS = ("home", "preview", "edit_with_preview", "refused_save")
CONFIG = {
    "affiliate_id": AFFILIATE_ID,
    "name": "Bench Media",
    "postbacks": [
        {
            "events": ["sale", "rebill"],
            "url": "https://track.bench.example/postback?cid={clickid}&payout={amount}&cur={currency}"
            "&ev={event}&offer={offer_id}&tx={transaction_id}",
        },
        {"events": ["registration"], "url": "https://track.bench.example/signup?cid={clickid}&tx={transaction_id}"},
    ],
}


# --- the parent: fresh processes, interleaved -----------------------------------------------


def worker_env() -> dict[str, str]:
    """The portal's Lambda environment, with moto's names (bench.support.moto_stack)."""
    from bench.support import moto_stack, worker_environment

    return worker_environment(["portal"], stack=moto_stack(), extra={"POWERTOOLS_TRACE_DISABLED": "true"})


def one_round(runs: dict[str, list[dict[str, Any]]], env: Mapping[str, str], *, pages: int, moto_pages: int) -> None:
    """One fresh process on fakes (`pages` requests of each kind), then one on moto."""
    from bench.support import run_worker

    runs.setdefault("fakes", []).append(run_worker("portal-warm", env, str(pages), "fakes", timeout_s=600))
    if moto_pages > 0:
        runs.setdefault("moto", []).append(run_worker("portal-warm", env, str(moto_pages), "moto", timeout_s=900))


def measure(*, repeats: int = 3, pages: int = 30, moto_pages: int = 10) -> dict[str, Any]:
    """`repeats` rounds, each a fresh process on fakes then one on moto (a noisy minute hurts
    both alike). Median and p95 over every warm request of every round; each round's median
    kept beside them."""
    env = worker_env()
    runs: dict[str, list[dict[str, Any]]] = {}
    load = [os.getloadavg()]
    for _ in range(repeats):
        one_round(runs, env, pages=pages, moto_pages=moto_pages)
        load.append(os.getloadavg())
    return summarise(runs, load=load)


def summarise(runs: Mapping[str, Sequence[Mapping[str, Any]]], *, load: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The figures of `measure` from the workers' raw samples (milliseconds per request)."""
    out: dict[str, Any] = {}
    for mode, results in runs.items():
        if not results:
            continue
        figures: dict[str, Any] = {}
        for kind in KINDS:
            figure: dict[str, Any] = {}
            for part in results[0]["samples_ms"][kind]:
                pooled = [v for r in results for v in r["samples_ms"][kind][part]]
                figure[part] = _spread(pooled)
            figure["round_medians_ms"] = [round(statistics.median(r["samples_ms"][kind]["wall"]), 2) for r in results]
            figures[kind] = figure
        out[mode] = {
            "pages": figures,
            "first_request_ms": _spread([r["first_request_ms"] for r in results]),
            "aws_calls_per_page": results[0]["aws_calls_per_page"],
            "log_bytes_per_request": results[0]["log_bytes_per_request"],
            "rounds": len(results),
            "requests_per_kind_per_round": len(results[0]["samples_ms"]["home"]["wall"]),
        }
    fakes = out.get("fakes", {}).get("pages", {})
    headline: dict[str, Any] = {
        f"{kind}_ms": {
            "median": fakes[kind]["wall"]["median"],
            "p95": fakes[kind]["wall"]["p95"],
            "cpu_median": fakes[kind]["cpu"]["median"],
        }
        for kind in KINDS
        if kind in fakes
    }
    if "home" in fakes:
        headline["home_render_ms"] = {
            "median": fakes["home"]["render"]["median"],
            "p95": fakes["home"]["render"]["p95"],
        }
    moto = out.get("moto", {}).get("pages", {})
    if "home" in moto:
        calls = out["moto"]["aws_calls_per_page"]
        headline["home_on_moto_ms"] = moto["home"]["wall"]["median"]
        headline["home_on_moto_without_moto_ms"] = moto["home"]["wall_without_moto"]["median"]
        headline["home_on_moto_without_moto_cpu_ms"] = moto["home"]["cpu_without_moto"]["median"]
        headline["edit_with_preview_on_moto_without_moto_ms"] = moto["edit_with_preview"]["wall_without_moto"]["median"]
        reads = sum(n for name, n in calls["home"].items() if name.startswith("dynamodb."))
        memory = memory_mb()
        cpu = moto["home"]["cpu_without_moto"]["median"]
        headline["home_estimate_on_lambda"] = {
            "ms": round(cpu * LAMBDA_MB_PER_VCPU / memory + reads * DYNAMODB_READ_MS, 1),
            "cpu_ms_scaled": round(cpu * LAMBDA_MB_PER_VCPU / memory, 1),
            "dynamodb_calls": reads,
            "dynamodb_ms": reads * DYNAMODB_READ_MS,
            "memory_mb": memory,
            "method": "the real clients' CPU without moto's (cpu_without_moto) scaled to the memory's share of a "
            f"vCPU ({LAMBDA_MB_PER_VCPU} MB a vCPU), plus {DYNAMODB_READ_MS:g} ms for each DynamoDB call, one "
            "after the other as the page makes them",
        }
    return {
        "warm_page": headline,
        **out,
        "load_average": [[round(x, 2) for x in one] for one in load],
        "method": "the portal handler in a fresh process with its Lambda environment, warm (the first request "
        "apart), HTTP API events of an affiliate with 2 postbacks and 50 deliveries; fakes: PortalService over "
        "in-memory fakes through the handler's seam (the portal's own cost, as ingest's warm figures); moto: "
        "the function's own service, adapters and boto3 clients on moto in-process, the time inside moto's "
        "before-send answer timed per call (wall and CPU) and subtracted (wall_without_moto, cpu_without_moto); "
        "cpu: the request's process time; render: portal_web.page (Jinja2) inside the same requests; "
        "median and p95 over every warm request of every round; DynamoDB round trips "
        "not included (home_estimate_on_lambda adds them)",
    }


def memory_mb() -> int:
    """The PortalFunction's MemorySize in template.yaml (the Globals' when it has none)."""
    from postback_ops.template import load_template

    template = load_template()
    props = template["Resources"]["PortalFunction"]["Properties"]
    return int(props.get("MemorySize", template.get("Globals", {}).get("Function", {}).get("MemorySize", 128)))


def _spread(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"median": 0.0, "p95": 0.0, "n": 0}
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"median": round(statistics.median(ordered), 2), "p95": round(p95, 2), "n": len(ordered)}


# --- the worker: one fresh process, one mode ------------------------------------------------


class _Clock:
    """Wall and CPU milliseconds spent inside a wrapped callable since the last `take`; calls
    counted by name."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.cpu_ms = 0.0
        self.calls: dict[str, int] = {}

    def wrap[**P, R](self, function: Callable[P, R], name: Callable[..., str] | None = None) -> Callable[P, R]:
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.ms += (time.perf_counter() - started) * 1000
                self.cpu_ms += (time.process_time() - cpu) * 1000
                key = name(*args, **kwargs) if name is not None else "calls"
                self.calls[key] = self.calls.get(key, 0) + 1

        return timed

    def take(self) -> tuple[float, float, dict[str, int]]:
        taken = (self.ms, self.cpu_ms, self.calls)
        self.ms, self.cpu_ms, self.calls = 0.0, 0.0, {}
        return taken


def warm(pages: int, mode: str) -> dict[str, Any]:
    """`pages` warm requests of each kind, interleaved, in this (fresh) process."""
    folder = os.environ.get("LAMBDA_TASK_ROOT")
    if folder and folder not in sys.path:
        sys.path.insert(0, folder)
    if mode == "fakes":
        return _run(pages, _on_fakes())
    if mode == "moto":
        from moto import mock_aws

        with mock_aws():
            return _run(pages, _on_moto())
    raise SystemExit(f"unknown mode {mode}")


class _Setup:
    def __init__(self, service: Any, cookie: str, csrf: str, moto: _Clock | None) -> None:
        self.service, self.cookie, self.csrf, self.moto = service, cookie, csrf, moto


def _deliveries(now: datetime) -> Iterator[tuple[Any, list[Any], Any]]:
    """The 50 deliveries: each message, its attempts and its state (newest first)."""
    from postback_relay.domain.delivery import Attempt, DeliveryState, PostbackMessage
    from postback_relay.domain.events import Event

    for n in range(DELIVERIES):
        created = now - timedelta(minutes=n + 1)
        event = Event.REGISTRATION if n % 5 == 4 else Event.SALE
        message = PostbackMessage(
            delivery_id=f"d{n:03}", affiliate_id=AFFILIATE_ID, transaction_id=f"T-{n}", event=event,
            offer_id="89", url=f"https://track.bench.example/postback?cid=c{n}&tx=T-{n}", created_at=created,
        )  # fmt: skip
        if n % 8 == 3:  # 6 failed after 3 attempts
            statuses, state = [500, 500, 404], DeliveryState.FAILED
        elif n % 12 == 5:  # 4 retrying after one
            statuses, state = [503], DeliveryState.RETRYING
        else:
            statuses, state = [200], DeliveryState.DELIVERED
        attempts = [
            Attempt(
                attempt=i + 1,
                at=created + timedelta(seconds=i),
                url=message.url,
                method="GET",
                status=status,
                latency_ms=40 + i,
                excerpt="OK" if status == 200 else "Internal error",
                error_kind=None if status == 200 else "http_status",
                outcome="delivered" if status == 200 else ("failed" if i == len(statuses) - 1 else "retry"),
            )
            for i, status in enumerate(statuses)
        ]
        yield message, attempts, state


def _enter(service: Any) -> tuple[str, str]:
    from postback_relay.domain.portal import new_link, sign_pass

    secret = service._secret()  # the bench signs its own link with the stack's secret
    link = new_link(AFFILIATE_ID, epoch=0, lifetime=timedelta(hours=1), now=time.time())
    cookie = service.enter(sign_pass(link, secret), service.csrf(link))
    return cookie, service.csrf(service.session(cookie))


def _on_fakes() -> _Setup:
    import portal_handler
    from bench import fakes
    from postback_relay.domain.config import parse_config
    from postback_relay.domain.records import DeliveryRecord
    from postback_relay.domain.times import utc_exact
    from postback_relay.services.portal import PortalService

    now = datetime.now(UTC)
    records = [
        DeliveryRecord(m.delivery_id, m, state, tuple(a), utc_exact(m.created_at), utc_exact(a[-1].at))
        for m, a, state in _deliveries(now)
    ]
    secret = b"bench-portal-secret-0123456789abcdef"
    service = PortalService(
        affiliates=fakes.AffiliateStoreFake(parse_config(CONFIG)),
        access=fakes.PortalStoreFake(),
        changes=fakes.PortalStoreFake(),
        deliveries=fakes.PortalDeliveriesFake(records),
        queue=fakes.PostbackQueueFake(),
        runs=fakes.TestRunStoreFake(),
        launcher=fakes.TestRunLauncherFake(),
        endpoints=fakes.EndpointStoreFake(),
        secret=lambda: secret,
        clock=lambda: datetime.now(UTC),
        schedule=lambda: ([1], 60),
    )
    portal_handler.portal_service.use(service)
    cookie, csrf = _enter(service)
    return _Setup(service, cookie, csrf, None)


def _on_moto() -> _Setup:
    import boto3
    from moto.core.botocore_stubber import BotocoreStubber

    from bench.support import MOTO_STACK_NAME
    from postback_ops.local.resources import create_resources, function_environment
    from postback_relay import wiring
    from postback_relay.domain.config import parse_config

    stack = create_resources(stack_name=MOTO_STACK_NAME)
    os.environ.update(function_environment(stack, "PortalFunction"))
    import portal_handler

    settings = portal_handler.load_settings(os.environ)
    dynamodb = boto3.client("dynamodb")
    wiring.affiliate_store(settings.affiliates_table, dynamodb=dynamodb).put(
        parse_config(CONFIG), expected_version=None, updated_by="bench"
    )
    log = wiring.delivery_log(settings.deliveries_table, dynamodb=dynamodb)
    for message, attempts, state in _deliveries(datetime.now(UTC)):
        for i, attempt in enumerate(attempts):
            log.record_attempt(message, attempt, state if i == len(attempts) - 1 else type(state).RETRYING)
    # Moto answers at botocore's before-send: the time inside its answer is moto's, not the
    # portal's. Timed per call, by service.
    clock = _Clock()

    def operation_of(stubber: Any, request: Any, *args: Any, **kwargs: Any) -> str:
        service = str(getattr(request, "url", "")).split("//", 1)[-1].split(".", 1)[0]
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rpartition(".")[2]
        return f"{service}.{operation or '?'}"

    BotocoreStubber.__call__ = clock.wrap(BotocoreStubber.__call__, operation_of)  # type: ignore[method-assign]
    service = portal_handler.portal_service()  # the function's own: settings, adapters, clients, secret
    cookie, csrf = _enter(service)
    return _Setup(service, cookie, csrf, clock)


def _event(method: str, path: str, cookie: str, form: Mapping[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": path,
        "headers": {"host": "portal.bench.example", "x-forwarded-proto": "https"},
        "cookies": [f"portal_session={cookie}"],
        "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
        "isBase64Encoded": False,
    }
    if form is not None:
        event["body"] = urlencode(form, doseq=True)
        event["headers"]["content-type"] = "application/x-www-form-urlencoded"
    return event


def _edit_form(csrf: str, *, first_url: str) -> dict[str, Any]:
    """The edit form as the browser sends it: both postbacks (the first edited) and the blank one."""
    postbacks = CONFIG["postbacks"]
    assert isinstance(postbacks, list)
    form: dict[str, Any] = {"csrf": csrf, "count": str(len(postbacks) + 1)}
    for i, spec in enumerate([*postbacks, {"events": [], "url": ""}]):
        form[f"pb-{i}-url"] = first_url if i == 0 else spec["url"]
        form[f"pb-{i}-events"] = spec["events"]
        form[f"pb-{i}-offers"] = ""
    return form


def _run(pages: int, setup: _Setup) -> dict[str, Any]:
    import portal_handler
    from bench.worker import _context

    render = _Clock()
    portal_handler.page = render.wrap(portal_handler.page)  # type: ignore[attr-defined]
    context = _context("portal")
    edited = "https://track.bench.example/postback?cid={clickid}&payout={amount}&ev={event}&tx={transaction_id}&v=2"
    requests = {
        "home": (_event("GET", "/portal/home", setup.cookie), 200, "Deliveries"),
        "preview": (
            _event("POST", "/portal/preview", setup.cookie, _edit_form(setup.csrf, first_url=edited)),
            200,
            "sample-0001",
        ),
        "refused_save": (
            _event("POST", "/portal/postbacks", setup.cookie, _edit_form(setup.csrf, first_url="ftp://nowhere")),
            400,
            "Not saved",
        ),
    }

    def call(kind: str) -> tuple[dict[str, float], dict[str, int]]:
        event, status, expected = requests[kind]
        render.take()
        if setup.moto:
            setup.moto.take()
        started, cpu = time.perf_counter(), time.process_time()
        answer = portal_handler.lambda_handler(event, context)  # type: ignore[arg-type]
        wall, cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
        if answer["statusCode"] != status or expected not in answer["body"]:
            raise RuntimeError(f"portal {kind} answered {answer['statusCode']}: {answer['body'][:500]}")
        moto_ms, moto_cpu_ms, calls = setup.moto.take() if setup.moto else (0.0, 0.0, {})
        parts = {"wall": wall, "cpu": cpu, "render": render.take()[0]}
        if setup.moto:
            parts |= {"moto": moto_ms, "wall_without_moto": wall - moto_ms, "cpu_without_moto": cpu - moto_cpu_ms}
        return parts, calls

    first = call("home")[0]["wall"]
    for _ in range(3):  # warm: templates compiled, caches filled
        for kind in requests:
            call(kind)
    samples: dict[str, dict[str, list[float]]] = {kind: {} for kind in KINDS}
    calls_per_page: dict[str, dict[str, int]] = {}
    sink = sys.stdout
    logged = getattr(sink, "bytes", 0)
    for _ in range(pages):
        pair: dict[str, float] = {}
        for kind in requests:
            parts, calls_per_page[kind] = call(kind)
            for part, value in parts.items():
                samples[kind].setdefault(part, []).append(round(value, 3))
                if kind in ("home", "preview"):
                    pair[part] = pair.get(part, 0.0) + value
        for part, value in pair.items():
            samples["edit_with_preview"].setdefault(part, []).append(round(value, 3))
    calls_per_page["edit_with_preview"] = {
        name: calls_per_page["home"].get(name, 0) + calls_per_page["preview"].get(name, 0)
        for name in {*calls_per_page["home"], *calls_per_page["preview"]}
    }
    return {
        "mode": "moto" if setup.moto else "fakes",
        "first_request_ms": round(first, 2),
        "samples_ms": samples,
        "aws_calls_per_page": calls_per_page,
        "log_bytes_per_request": round((getattr(sink, "bytes", 0) - logged) / (pages * len(requests)), 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure(repeats=1, pages=5, moto_pages=2), indent=2))
