"""The dashboard names only metrics the code emits, and shows every one it emits (or says why not).

What the code emits is found twice: statically, every `add_metric`/`single_metric` call in the
functions must take its name from a module constant (`METRIC_*` or a `*_METRICS` mapping), whose
values are read from the source; dynamically, each handler's emitting functions run with
Powertools writing its Embedded Metric Format lines to stdout, which give the namespace and the
dimensions of every name. The dashboard's body (template.yaml, a JSON document under Fn::Sub)
is read for plain metric entries and Metrics Insights queries.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from template_support import TEMPLATE

from postback_ops.template import REPO_ROOT, resources_of_type

FUNCTIONS = resources_of_type(TEMPLATE, "AWS::Serverless::Function")
NAMESPACE = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]

# Emitted, and deliberately not on the dashboard: name -> why.
LEFT_OFF = {
    "PostbacksSkipped": "copies and redeliveries of postbacks already done; noise beside the outcomes that matter",
}


@dataclass(frozen=True)
class DashboardMetric:
    namespace: str
    name: str
    dimensions: dict[str, str]  # for a Metrics Insights query: the SCHEMA's keys, valued "*"
    where: str


def dashboard_body(template: Mapping[str, Any] = TEMPLATE) -> dict[str, Any]:
    sub = template["Resources"]["OpsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(sub, str)
    # Fn::Sub's ${...} become placeholders (a JSON string's content either way).
    text = re.sub(r"\$\{([A-Za-z0-9:.]+)\}", lambda m: f"SUB<{m[1]}>", sub)
    body: dict[str, Any] = json.loads(text)
    return body


def dashboard_metrics(body: Mapping[str, Any] | None = None) -> list[DashboardMetric]:
    found: list[DashboardMetric] = []
    for widget in (body or dashboard_body())["widgets"]:
        title = widget["properties"].get("title", widget["type"])
        for entry in widget["properties"].get("metrics", []):
            options = entry[-1] if entry and isinstance(entry[-1], dict) else {}
            plain = [part for part in entry if not isinstance(part, dict)]
            if "expression" in options:
                found.extend(insights_metrics(options["expression"], title))
                continue
            assert "." not in plain, f"{title}: spell every entry out, no '.' shorthand"
            namespace, name, *pairs = plain
            assert len(pairs) % 2 == 0, f"{title}: {entry}"
            found.append(DashboardMetric(namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), title))
    return found


_QUERY = re.compile(
    r"SELECT (?:SUM|AVG|MAX|MIN|COUNT)\((?P<name>\w+)\) FROM SCHEMA\((?P<schema>[^)]*)\)"
    r"(?: WHERE (?P<where>.*?))?(?: GROUP BY (?P<group>[\w, ]+))?$"
)


def insights_metrics(expression: str, title: str) -> Iterator[DashboardMetric]:
    match = _QUERY.fullmatch(expression.strip())
    assert match, f"{title}: a query this test cannot read: {expression}"
    namespace, *keys = (part.strip().strip('"') for part in match["schema"].split(","))
    dimensions = dict.fromkeys(keys, "*")
    for condition in re.findall(r"(\w+) = '([^']*)'", match["where"] or ""):
        assert condition[0] in dimensions, f"{title}: WHERE on {condition[0]}, not in the schema"
        dimensions[condition[0]] = condition[1]
    for key in (match["group"] or "").split(","):
        assert not key.strip() or key.strip() in dimensions, f"{title}: GROUP BY {key}, not in the schema"
    yield DashboardMetric(namespace, match["name"], dimensions, title)


# --- what the code emits, read from its source ------------------------------------------------


def function_of(path: Path) -> str:
    for logical_id, function in FUNCTIONS.items():
        if path.parent == REPO_ROOT / function["Properties"]["CodeUri"].rstrip("/"):
            return logical_id
    raise AssertionError(f"{path} emits metrics but is no function's code (emit from handlers only)")


def emitted_names() -> dict[str, set[str]]:
    """Every metric name the code can emit -> the functions (logical IDs) emitting it."""
    names: dict[str, set[str]] = {}
    sources = [*REPO_ROOT.glob("functions/*/*.py"), *REPO_ROOT.glob("layers/shared/postback_relay/**/*.py")]
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants: dict[str, list[str]] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target = node.targets[0].id
                if target.startswith("METRIC_") or target.endswith("_METRICS"):
                    constants[target] = [
                        n.value
                        for n in ast.walk(node.value)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    ]
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if callee not in ("add_metric", "single_metric"):
                continue
            name_arg = next((k.value for k in call.keywords if k.arg == "name"), None)
            base = name_arg.value if isinstance(name_arg, ast.Subscript) else name_arg
            assert isinstance(base, ast.Name) and base.id in constants, (
                f"{path.name}:{call.lineno}: a metric's name must come from a METRIC_* or *_METRICS constant"
            )
            for value in constants[base.id]:
                names.setdefault(value, set()).add(function_of(path))
    return names


def service_of(logical_id: str) -> str:
    service: str = FUNCTIONS[logical_id]["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    return service


# --- what the code emits, observed --------------------------------------------------------------


Observed = dict[str, tuple[str, frozenset[str], dict[str, set[str]]]]


@pytest.fixture(scope="module")
def observed() -> Observed:
    """name -> (namespace, dimension keys, values seen per key), from each handler's own emitters."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        drive_every_emitter()
    seen: Observed = {}
    for blob in emf_lines(printed.getvalue()):
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            keys = frozenset(key for group in directive["Dimensions"] for key in group)
            for metric in directive["Metrics"]:
                entry = seen.setdefault(metric["Name"], (directive["Namespace"], keys, {}))
                assert entry[:2] == (directive["Namespace"], keys), f"{metric['Name']} emitted two ways"
                for key in keys:
                    entry[2].setdefault(key, set()).add(str(blob[key]))
    return seen


def emf_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith('{"_aws":'):
            yield json.loads(line)


def drive_every_emitter() -> None:
    """Run every function's metric-emitting code with values that make each name appear."""
    import dispatch_sqs
    import ingest_http
    import outbox_stream
    import testlink_tasks
    from postback_relay.domain.conversion import ConversionOutcome, ConversionResult
    from postback_relay.domain.errors import (
        InfrastructureError,
        InvalidConversionRequest,
        PayloadTooLarge,
        SignatureError,
        UnsupportedMediaType,
    )
    from postback_relay.domain.events import Event
    from postback_relay.domain.notices import CircuitChange
    from postback_relay.services.dispatch import DispatchOutcome, DispatchResult
    from postback_relay.services.ingest import Answer, IngestReport
    from postback_relay.services.outbox import OutboxReport

    outcomes: dict[str, DispatchResult | Exception] = {
        outcome.value: DispatchResult(outcome, latency_ms=20) for outcome in DispatchOutcome
    }
    outcomes["crash"] = RuntimeError("boom")
    dispatch_sqs.count(outcomes)
    dispatch_sqs.count_circuits({CircuitChange.OPENED: 1, CircuitChange.CLOSED: 1})
    dispatch_sqs.metrics.flush_metrics()

    taken = ConversionResult(transaction_id="T", event=Event.SALE, affiliate_id="1", outcome=ConversionOutcome.QUEUED)
    ingest_http.count(IngestReport(answers=(Answer(taken), Answer(taken, repeat=True)), postbacks_queued=1))
    ingest_http.payload_too_large(PayloadTooLarge("big"))
    ingest_http.bad_signature(SignatureError("bad"))
    ingest_http.unsupported_media_type(UnsupportedMediaType("xml"))
    ingest_http.invalid_request(InvalidConversionRequest([]))
    ingest_http.unavailable(InfrastructureError("down"))
    ingest_http.unexpected(RuntimeError("bug"))
    ingest_http.metrics.flush_metrics()

    report = OutboxReport(queued=9, failed=frozenset({"1"}), reasons=("refused",), parked=("T-2#sale",))
    outbox_stream.count(report, records=10)
    outbox_stream.metrics.flush_metrics()

    for verdict in ("passed", "failed", "running"):
        testlink_tasks.count_verdict({"verdict": verdict})


def test_every_metric_name_is_pascal_case() -> None:
    # GIVEN every metric name the functions can emit
    names = emitted_names()
    # THEN each is one PascalCase word (no snake_case, no dots), as CloudWatch shows them side by side
    assert names
    assert [name for name in names if not re.fullmatch(r"(?:[A-Z][a-z0-9]*)+", name)] == []


def test_every_metric_the_code_emits_is_observed_with_its_namespace_and_dimensions(observed: Observed) -> None:
    # GIVEN the names the source can emit
    names = emitted_names()
    assert {"PostbacksDelivered", "Conversions", "TestRunVerdicts", "CircuitsOpened"} <= names.keys()
    # WHEN every emitter runs with Powertools printing its metrics (the fixture)
    # THEN exactly those names were observed, in the template's namespace, each with `service`
    # taken from the function's POWERTOOLS_SERVICE_NAME
    assert observed.keys() == names.keys()
    for name, (namespace, keys, values) in observed.items():
        assert namespace == NAMESPACE, name
        assert "service" in keys, name
        assert values["service"] == {os.environ["POWERTOOLS_SERVICE_NAME"]}, name


def dashboard_problems(body: Mapping[str, Any], observed: Observed) -> list[str]:
    """What is wrong with a dashboard: a metric the code does not emit (or not in that
    namespace, with those dimensions, from that service), and an emitted one neither shown nor
    left off on purpose. Empty when the dashboard shows exactly what the code emits."""
    names = emitted_names()
    on_dashboard = [m for m in dashboard_metrics(body) if not m.namespace.startswith("AWS/")]
    problems = [] if on_dashboard else ["no metric of the code's on the dashboard"]
    for metric in on_dashboard:
        where = f"{metric.where}: {metric.name}"
        if metric.name not in names or metric.name not in observed:
            problems.append(f"{where} is not emitted by the code")
            continue
        namespace, keys, values = observed[metric.name]
        if metric.namespace != namespace:
            problems.append(f"{where}: namespace {metric.namespace}, emitted in {namespace}")
        if metric.dimensions.keys() != keys:
            problems.append(f"{where}: dimensions {sorted(metric.dimensions)} != {sorted(keys)}")
            continue
        if metric.dimensions["service"] not in {service_of(f) for f in names[metric.name]}:
            problems.append(f"{where}: service {metric.dimensions['service']} does not emit it")
        for key, value in metric.dimensions.items():
            if key != "service" and value != "*" and value not in values[key]:
                problems.append(f"{where}: {key}={value} is never emitted ({sorted(values[key])})")
    shown = {m.name for m in on_dashboard}
    problems += [
        f"{name}: emitted, but neither on the dashboard nor in LEFT_OFF"
        for name in sorted(names.keys() - shown - LEFT_OFF.keys())
    ]
    problems += [f"{name}: left off, yet on the dashboard" for name in sorted(LEFT_OFF.keys() & shown)]
    return problems


def test_the_dashboard_shows_every_metric_the_code_emits_and_only_those(observed: Observed) -> None:
    # GIVEN the dashboard of template.yaml, and what the code emits (read and observed)
    # THEN each metric it shows is emitted as it names it, and each emitted one is shown or
    # left off on purpose
    assert dashboard_problems(dashboard_body(), observed) == []


def test_the_dashboard_has_the_widgets_ops_need_and_its_url_is_an_output() -> None:
    widgets = dashboard_body()["widgets"]
    titles = " | ".join(w["properties"].get("title", w["properties"].get("markdown", "")) for w in widgets)
    for needed in ("Conversions by outcome", "latency", "Dead-letter", "iterator age", "Circuits", "Test-run verdicts"):
        assert needed.lower() in titles.lower(), needed
    (logs,) = [w for w in widgets if w["type"] == "log"]
    assert logs["properties"]["query"].startswith("SOURCE 'SUB<DispatchLogGroup>'")
    assert "by affiliate_id" in logs["properties"]["query"]
    assert "OpsDashboard" in TEMPLATE["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    # The p50/p95 lines are percentiles of the same latency metric
    stats = {
        entry[-1].get("stat")
        for w in widgets
        for entry in w["properties"].get("metrics", [])
        if "PostbackLatency" in entry
    }
    assert stats == {"p50", "p95"}


def test_a_dashboard_with_a_metric_renamed_fails_the_check(observed: Observed) -> None:
    # GIVEN a copy of the template whose dashboard spells the delivered postbacks' metric wrong
    template = copy.deepcopy(dict(TEMPLATE))
    properties = template["Resources"]["OpsDashboard"]["Properties"]
    body = properties["DashboardBody"]["Fn::Sub"]
    assert body.count('"PostbacksDelivered"') == 1
    properties["DashboardBody"]["Fn::Sub"] = body.replace('"PostbacksDelivered"', '"PostbacksDelivred"')

    # WHEN the dashboard check runs on it
    problems = dashboard_problems(dashboard_body(template), observed)

    # THEN it names the metric nobody emits, and the emitted one the dashboard lost
    assert len(problems) == 2, problems
    assert problems[0].endswith(": PostbacksDelivred is not emitted by the code"), problems
    assert problems[1] == "PostbacksDelivered: emitted, but neither on the dashboard nor in LEFT_OFF"
