"""Rules AWS enforces (or that decide whether the deployed stack works) and moto does not.

Each rule is a function of the SAM template that returns the problems it finds, one
sentence each naming the resource; tests/unit/template/test_aws_rules.py runs every rule on
template.yaml and on broken copies. Every rule walks whatever the template holds (each
function, queue, topic, state machine), never a list of today's resources.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from postback_ops.template import REPO_ROOT, resources_of_type

__all__ = ["RULES", "problems", "resources_of_type"]

Template = Mapping[str, Any]
Rule = Callable[[Template], list[str]]

MAX_FUNCTION_TIMEOUT_S = 900
HTTP_API_INTEGRATION_TIMEOUT_S = 30
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
LAMBDA_ENVIRONMENT_BYTES = 4 * 1024
SQS_MAX_RETENTION_S = 1_209_600
SQS_MIN_RETENTION_S = 60
SQS_MAX_DELAY_S = 900
SQS_MAX_VISIBILITY_S = 43_200
ESM_MAX_CONCURRENCY_RANGE = (2, 1000)
DYNAMODB_STREAM_BATCH_MAX = 10_000
# Longest value a Ref/GetAtt of the stack can take in an environment variable (an SQS URL of a
# CloudFormation-named queue: https://sqs.<region>.amazonaws.com/<account>/<stack>-<id>-<suffix>).
_REF_VALUE_ESTIMATE = 200


def _props(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    return resource.get("Properties") or {}


def _globals(template: Template) -> Mapping[str, Any]:
    function_globals: Mapping[str, Any] = template.get("Globals", {}).get("Function", {})
    return function_globals


def _function_setting(template: Template, function: Mapping[str, Any], key: str, default: Any) -> Any:
    return _props(function).get(key, _globals(template).get(key, default))


def _parameter_bounds(template: Template, value: Any) -> tuple[float | None, float | None, Any]:
    """(min, max, default) a value can take: a literal, or a Ref to a Number parameter."""
    if isinstance(value, Mapping) and "Ref" in value:
        spec = template.get("Parameters", {}).get(value["Ref"], {})
        allowed = spec.get("AllowedValues")
        low = spec.get("MinValue", min(allowed) if allowed else None)
        high = spec.get("MaxValue", max(allowed) if allowed else None)
        return low, high, spec.get("Default")
    return value, value, value


def _ref_target(value: Any) -> str | None:
    if isinstance(value, Mapping):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


def _function_events(template: Template, event_type: str) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        for event in (_props(function).get("Events") or {}).values():
            if event.get("Type") == event_type:
                yield name, function, _props(event)


# --- 1. CloudWatch alarms and encrypted SNS topics --------------------------------------------


def _grants(statement: Mapping[str, Any], principal_key: str, principal: str, action: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    principals = statement.get("Principal", {})
    named = principals.get(principal_key, []) if isinstance(principals, Mapping) else principals
    named_list = [named] if isinstance(named, (str, Mapping)) else named
    if principal not in named_list and "*" not in named_list:
        return False
    actions = statement.get("Action", [])
    return any(fnmatch.fnmatchcase(action, a) for a in ([actions] if isinstance(actions, str) else actions))


def _is_account_root(value: Any) -> bool:
    text = json.dumps(value)
    return ":root" in text and "AWS::AccountId" in text


def alarm_topics_are_publishable(template: Template) -> list[str]:
    """An alarm's SNS topic must not use an AWS managed key; a customer managed key's policy
    must let cloudwatch.amazonaws.com use it and let the account administer it."""
    problems: list[str] = []
    resources = template.get("Resources", {})
    topics = _alarm_topics(template, problems)
    for topic_id in sorted(topics):
        master_key = _props(resources[topic_id]).get("KmsMasterKeyId")
        if master_key is not None:
            problems.extend(_topic_key_problems(resources, topic_id, master_key))
    return problems


def _alarm_topics(template: Template, problems: list[str]) -> set[str]:
    """The template's SNS topics that alarms notify; a topic outside the template is a problem."""
    resources = template.get("Resources", {})
    topics: set[str] = set()
    for alarm_id, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        for key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            for action in _props(alarm).get(key, []):
                target = _ref_target(action)
                if target and resources.get(target, {}).get("Type") == "AWS::SNS::Topic":
                    topics.add(target)
                elif isinstance(action, str) and ":sns:" in action:
                    problems.append(
                        f"{alarm_id}: notifies {action}, a topic outside the template whose key is unchecked"
                    )
    return topics


def _topic_key_problems(resources: Mapping[str, Any], topic_id: str, master_key: Any) -> list[str]:
    """What stops CloudWatch publishing to a topic encrypted with `master_key`."""
    target_key = _ref_target(master_key)
    if target_key is None:
        text = str(master_key)
        kind = "the AWS managed key" if text.startswith("alias/aws/") else "a key outside the template"
        return [
            f"{topic_id}: encrypted with {kind} {text}; CloudWatch alarms cannot publish to it "
            "(its key policy must grant cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*)"
        ]
    key_id: str = target_key
    key_resource = resources.get(key_id, {})
    if key_resource.get("Type") == "AWS::KMS::Alias":
        key_id = _ref_target(_props(key_resource).get("TargetKeyId")) or key_id
        key_resource = resources.get(key_id, {})
    statements = _props(key_resource).get("KeyPolicy", {}).get("Statement", [])
    problems = [
        f"{topic_id}: key {key_id}'s policy does not grant cloudwatch.amazonaws.com {action}"
        for action in ("kms:Decrypt", "kms:GenerateDataKey")
        if not any(_grants(s, "Service", "cloudwatch.amazonaws.com", action) for s in statements)
    ]
    if not any(
        s.get("Effect") == "Allow" and _is_account_root(s.get("Principal")) and s.get("Action") in ("kms:*", ["kms:*"])
        for s in statements
    ):
        problems.append(f"{topic_id}: key {key_id}'s policy does not let the account root administer it")
    return problems


# --- 2. SQS event sources ----------------------------------------------------------------------


def sqs_visibility_covers_function_timeout(template: Template) -> list[str]:
    """Lambda refuses an SQS event source whose queue's visibility timeout is below the
    function timeout; AWS advises at least 6x, so a batch in flight is never polled twice."""
    problems: list[str] = []
    resources = template.get("Resources", {})
    for name, function, event in _function_events(template, "SQS"):
        queue_id = _ref_target(event.get("Queue"))
        if queue_id is None or queue_id not in resources:
            problems.append(f"{name}: SQS event on a queue outside the template; its visibility is unchecked")
            continue
        visibility = int(_props(resources[queue_id]).get("VisibilityTimeout", 30))
        timeout = int(_function_setting(template, function, "Timeout", 3))
        if visibility < 6 * timeout:
            problems.append(f"{name}: {queue_id} VisibilityTimeout {visibility} s < 6 x function Timeout {timeout} s")
    return problems


def event_source_concurrency_in_range(template: Template) -> list[str]:
    """ScalingConfig.MaximumConcurrency must be 2..1000 (and so must a parameter's bounds)."""
    low_limit, high_limit = ESM_MAX_CONCURRENCY_RANGE
    problems: list[str] = []
    for name, _function, event in _function_events(template, "SQS"):
        value = (event.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if value is None:
            continue
        low, high, _default = _parameter_bounds(template, value)
        if low is None or high is None or low < low_limit or high > high_limit:
            problems.append(f"{name}: MaximumConcurrency may be {low}..{high}; AWS accepts {low_limit}..{high_limit}")
    return problems


def queue_settings_in_range(template: Template) -> list[str]:
    """Retention 60 s..14 days, DelaySeconds <= 900, VisibilityTimeout <= 12 h, and a dead-letter
    queue that keeps a message at least as long as its source queue (an expired message's age
    counts from its first enqueue, so a shorter DLQ retention drops postbacks)."""
    problems: list[str] = []
    resources = template.get("Resources", {})
    for name, queue in resources_of_type(template, "AWS::SQS::Queue").items():
        props = _props(queue)
        retention = int(props.get("MessageRetentionPeriod", 345_600))
        if not SQS_MIN_RETENTION_S <= retention <= SQS_MAX_RETENTION_S:
            problems.append(f"{name}: MessageRetentionPeriod {retention} outside 60..1209600")
        if int(props.get("DelaySeconds", 0)) > SQS_MAX_DELAY_S:
            problems.append(f"{name}: DelaySeconds above 900")
        if int(props.get("VisibilityTimeout", 30)) > SQS_MAX_VISIBILITY_S:
            problems.append(f"{name}: VisibilityTimeout above 43200 (12 h)")
        redrive = props.get("RedrivePolicy")
        if redrive:
            dlq = _ref_target(redrive.get("deadLetterTargetArn"))
            if dlq in resources:
                dlq_retention = int(_props(resources[dlq]).get("MessageRetentionPeriod", 345_600))
                if dlq_retention < retention:
                    problems.append(f"{name}: dead-letter queue {dlq} keeps messages {dlq_retention} s < {retention} s")
    return problems


# --- 3. functions ------------------------------------------------------------------------------


def http_api_functions_fit_the_integration_timeout(template: Template) -> list[str]:
    """An HTTP API waits at most 30 s for its integration: a longer function timeout only
    turns a slow answer into a 503 while the function runs on."""
    problems: list[str] = []
    for name, function, _event in _function_events(template, "HttpApi"):
        timeout = int(_function_setting(template, function, "Timeout", 3))
        if timeout > HTTP_API_INTEGRATION_TIMEOUT_S:
            problems.append(f"{name}: Timeout {timeout} s behind an HTTP API (integration timeout 30 s)")
    return problems


def functions_within_lambda_limits(template: Template) -> list[str]:
    """Timeout <= 900 s; the environment's keys and values <= 4 KB (Refs counted at their
    longest plausible value); a body limit under Lambda's 6 MB synchronous payload."""
    problems: list[str] = []
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        timeout = int(_function_setting(template, function, "Timeout", 3))
        if timeout > MAX_FUNCTION_TIMEOUT_S:
            problems.append(f"{name}: Timeout {timeout} s above Lambda's 900 s")
        variables = {
            **(_globals(template).get("Environment", {}).get("Variables", {})),
            **(_props(function).get("Environment", {}).get("Variables", {})),
        }
        size = sum(len(k) + (len(v) if isinstance(v, str) else _REF_VALUE_ESTIMATE) for k, v in variables.items())
        if size > LAMBDA_ENVIRONMENT_BYTES:
            problems.append(f"{name}: environment about {size} bytes, above Lambda's 4 KB")
        body = variables.get("MAX_BODY_BYTES")
        if isinstance(body, str) and int(body) >= LAMBDA_SYNC_PAYLOAD_BYTES:
            problems.append(f"{name}: MAX_BODY_BYTES {body} not below Lambda's 6 MB synchronous payload")
    return problems


def function_logs_go_to_kept_log_groups(template: Template) -> list[str]:
    """With LoggingConfig.LogGroup, Lambda writes to that group (not /aws/lambda/<name>); it
    must be a group of the stack with a retention, or logs are kept forever at a cost."""
    problems: list[str] = []
    resources = template.get("Resources", {})
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        config = {**_globals(template).get("LoggingConfig", {}), **_props(function).get("LoggingConfig", {})}
        group = _ref_target(config.get("LogGroup"))
        if group is None or resources.get(group, {}).get("Type") != "AWS::Logs::LogGroup":
            problems.append(f"{name}: LoggingConfig.LogGroup is not a log group of the stack")
        elif "RetentionInDays" not in _props(resources[group]):
            problems.append(f"{name}: log group {group} has no RetentionInDays")
    return problems


def state_machine_tasks_outlast_their_functions(template: Template) -> list[str]:
    """A Task's TimeoutSeconds must exceed the function's Timeout, or Step Functions gives up
    (States.Timeout) on a step Lambda would still finish."""
    problems: list[str] = []
    functions = resources_of_type(template, "AWS::Serverless::Function")
    for name, machine in resources_of_type(template, "AWS::Serverless::StateMachine").items():
        props = _props(machine)
        if "DefinitionUri" not in props:
            continue
        definition = json.loads((REPO_ROOT / props["DefinitionUri"]).read_text(encoding="utf-8"))
        substitutions = {k: _ref_target(v) for k, v in (props.get("DefinitionSubstitutions") or {}).items()}
        for state_name, state in definition.get("States", {}).items():
            if state.get("Type") != "Task":
                continue
            target = str((state.get("Parameters") or {}).get("FunctionName", state.get("Resource", "")))
            function_id = next((fid for key, fid in substitutions.items() if f"${{{key}}}" in target), None)
            if function_id not in functions:
                continue
            timeout = int(_function_setting(template, functions[function_id], "Timeout", 3))
            task_timeout = state.get("TimeoutSeconds")
            if task_timeout is not None and int(task_timeout) <= timeout:
                problems.append(
                    f"{name}.{state_name}: TimeoutSeconds {task_timeout} <= {function_id} Timeout {timeout} s"
                )
    return problems


# --- 4. stream event sources (the outbox function, when it lands) ------------------------------


def stream_event_sources_in_range(template: Template) -> list[str]:
    """DynamoDB stream ESMs: BatchSize 1..10000, MaximumRecordAgeInSeconds -1 or 60..604800,
    MaximumRetryAttempts -1..10000, ParallelizationFactor 1..10."""
    problems: list[str] = []
    for name, _function, event in _function_events(template, "DynamoDB"):
        batch = event.get("BatchSize")
        if batch is not None and not 1 <= int(batch) <= DYNAMODB_STREAM_BATCH_MAX:
            problems.append(f"{name}: stream BatchSize {batch} outside 1..10000")
        age = event.get("MaximumRecordAgeInSeconds")
        if age is not None and not (int(age) == -1 or 60 <= int(age) <= 604_800):
            problems.append(f"{name}: MaximumRecordAgeInSeconds {age} not -1 or 60..604800")
        retries = event.get("MaximumRetryAttempts")
        if retries is not None and not -1 <= int(retries) <= 10_000:
            problems.append(f"{name}: MaximumRetryAttempts {retries} outside -1..10000")
        factor = event.get("ParallelizationFactor")
        if factor is not None and not 1 <= int(factor) <= 10:
            problems.append(f"{name}: ParallelizationFactor {factor} outside 1..10")
    return problems


# --- 5. data kept after `sam delete` -----------------------------------------------------------


def retained_tables_are_retained_on_replace_too(template: Template) -> list[str]:
    """A table kept on delete must be kept on replacement too: otherwise a change that
    replaces it (a new key schema) deletes the data that `sam delete` would have kept."""
    problems: list[str] = []
    for name, table in resources_of_type(template, "AWS::DynamoDB::Table").items():
        deletion, replace = table.get("DeletionPolicy"), table.get("UpdateReplacePolicy")
        if deletion == "Retain" and replace != "Retain":
            problems.append(f"{name}: DeletionPolicy Retain without UpdateReplacePolicy Retain")
    return problems


RULES: tuple[Rule, ...] = (
    alarm_topics_are_publishable,
    sqs_visibility_covers_function_timeout,
    event_source_concurrency_in_range,
    queue_settings_in_range,
    http_api_functions_fit_the_integration_timeout,
    functions_within_lambda_limits,
    function_logs_go_to_kept_log_groups,
    state_machine_tasks_outlast_their_functions,
    stream_event_sources_in_range,
    retained_tables_are_retained_on_replace_too,
)


def problems(template: Template) -> list[str]:
    return [problem for rule in RULES for problem in rule(template)]
