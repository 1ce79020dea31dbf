"""What the template's defaults set for the bill, and the batching choices priced and timed.

`defaults(template)` reads what decides the bill beyond the request path from template.yaml
itself: the batching windows and the dispatcher's batch (parameters), the log levels
(`LoggingConfig` in Globals, the `LogLevel` parameter), tracing (`TracingMode`), and what costs
a month at any volume (alarms, dashboards, secrets, the metrics the code emits).

`CHOICES` are the batching settings `make bench` runs the local stack with, side by side, and
prices at each monthly volume: the defaults, the settings before issue 27, and the others the
issue asks about. Each is a set of template parameter overrides (as `sam deploy
--parameter-overrides` takes them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from postback_ops.template import resources_of_type, template_value

# name -> (template parameter overrides, the local DynamoDB served one request at a time)
CHOICES: dict[str, tuple[dict[str, str], bool]] = {
    "defaults (stream 1 s; dispatch 10, no window)": ({}, True),
    "before (stream 1 s; dispatch 50 in 1 s)": (
        {"OutboxBatchingWindowSeconds": "1", "DispatchBatchSize": "50", "DispatchBatchingWindowSeconds": "1"},
        True,
    ),
    "stream 0 s; dispatch 10, no window": ({"OutboxBatchingWindowSeconds": "0"}, True),
    "defaults, local DynamoDB serving tables concurrently": ({}, False),
    "defaults, IngestFront=FunctionUrl": ({"IngestFront": "FunctionUrl"}, True),
}
DEFAULTS = next(iter(CHOICES))
_METRIC_ROW = re.compile(r'\["PostbackRelay", "(\w+)"((?:, "[^"]+")*)')


@dataclass(frozen=True)
class Defaults:
    """What the template's defaults set for the bill."""

    outbox_batch: int
    outbox_window_s: float
    dispatch_batch: int
    dispatch_window_s: float
    log_level: str  # the functions' own level (LogLevel)
    application_log_level: str  # Lambda's filter of application lines (LoggingConfig)
    system_log_level: str  # Lambda's platform lines (LoggingConfig): WARN drops START/END/REPORT
    tracing_mode: str
    ingest_front: str
    alarms: int
    dashboards: int
    secrets: int
    custom_metrics: int

    @property
    def platform_lines(self) -> bool:
        """Whether Lambda writes its START/END/REPORT lines (system level INFO or DEBUG)."""
        return self.system_log_level not in ("WARN",)


def _event(template: Mapping[str, Any], function: str, kind: str) -> dict[str, Any]:
    events = template["Resources"].get(function, {}).get("Properties", {}).get("Events", {})
    props: dict[str, Any] = next((e.get("Properties", {}) for e in events.values() if e.get("Type") == kind), {})
    return {key: template_value(template, value) for key, value in props.items()}


def custom_metrics(template: Mapping[str, Any]) -> int:
    """The metric streams the code emits in an ordinary month, as the dashboard lists them (its
    test holds it to what the code emits): one per row, and conversions by outcome and event
    (taken as 4: delivered / no postback, for conversions and their reversals)."""
    body = str(template["Resources"]["OpsDashboard"]["Properties"]["DashboardBody"])
    rows = {match.group(0) for match in _METRIC_ROW.finditer(body)}
    return len(rows) + 4


def defaults(template: Mapping[str, Any]) -> Defaults:
    function_globals = template.get("Globals", {}).get("Function", {})
    logging_config = function_globals.get("LoggingConfig", {})
    parameters = template.get("Parameters", {})
    outbox = _event(template, "OutboxFunction", "DynamoDB")
    dispatch = _event(template, "DispatchFunction", "SQS")
    return Defaults(
        outbox_batch=int(outbox.get("BatchSize", 100)),
        outbox_window_s=float(outbox.get("MaximumBatchingWindowInSeconds", 0)),
        dispatch_batch=int(dispatch.get("BatchSize", 10)),
        dispatch_window_s=float(dispatch.get("MaximumBatchingWindowInSeconds", 0)),
        log_level=str(parameters.get("LogLevel", {}).get("Default", "INFO")),
        application_log_level=str(template_value(template, logging_config.get("ApplicationLogLevel", "INFO"))),
        system_log_level=str(template_value(template, logging_config.get("SystemLogLevel", "INFO"))),
        tracing_mode=str(template_value(template, function_globals.get("Tracing", "PassThrough"))),
        ingest_front=str(parameters.get("IngestFront", {}).get("Default", "HttpApi")),
        alarms=len(resources_of_type(template, "AWS::CloudWatch::Alarm")),
        dashboards=len(resources_of_type(template, "AWS::CloudWatch::Dashboard")),
        secrets=len(resources_of_type(template, "AWS::SecretsManager::Secret")),
        custom_metrics=custom_metrics(template),
    )
