"""IAM sufficiency: every recorded AWS call against its principal's translated role.

The roles come from the translated template (`translate`), so they are what SAM really
creates from the policy templates. A policy's resources (Fn::Sub, Ref, Fn::GetAtt) and a
recorded call's ARN are both put in one canonical form, where the region and account are
placeholders and a resource's physical name becomes `<<LogicalId>>`: the tests and the local
stack name every table, queue, secret and routed function `<prefix>-<LogicalId>` (or the
logical ID itself), so a recorded name maps back to the resource it stands for. Then IAM's
rules apply: an explicit Deny wins, actions and resources match with `*` and `?`.

Principals: each AWS::Lambda::Function (its `Role`), each AWS::StepFunctions::StateMachine
(its `RoleArn`; also every Task state of its definition, checked without a recording), and
the `postback` CLI (the operator policy the README states, `OPERATOR_POLICY`).

`python -m postback_ops.awsrules.iam [CALLS.jsonl]` evaluates a recording; exit 1 names each
call that would be denied.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postback_ops.awsrules import unused_grants
from postback_ops.awsrules.calls import Authorization
from postback_ops.awsrules.translate import BUILD_DIR, VARIANTS, translate
from postback_ops.awsrules.unused_grants import Grant
from postback_ops.target import LOCAL_OUTPUTS_PARAMETER
from postback_ops.template import REPO_ROOT, load_template, with_parameters

CALL_LOG = BUILD_DIR / "calls.jsonl"
README = REPO_ROOT / "docs" / "operations.md"  # holds the operator policy block (it left README.md)
REGION = "{region}"
ACCOUNT = "{account}"
STATE_MACHINE_PRINCIPAL = "StepFunctions"
CLI_PRINCIPAL = "postback CLI"
# Calls the CLI makes only against the local stack (`postback --local` reads the stack's
# outputs from SSM there, and from CloudFormation on AWS): not part of the operator policy.
LOCAL_ONLY_CLI_CALLS = frozenset({("ssm:GetParameter", f"parameter{LOCAL_OUTPUTS_PARAMETER}")})

# What the AWS managed policies SAM attaches allow (their documents, as published). A role
# holding another managed policy is reported, not guessed at.
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
}


# --- canonical resource forms --------------------------------------------------------------


def _token(logical_id: str) -> str:
    return f"<<{logical_id}>>"


_REF_FORMS: dict[str, str] = {
    "AWS::DynamoDB::Table": "{t}",
    "AWS::SQS::Queue": "https://sqs.{r}.amazonaws.com/{a}/{t}",
    "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:{r}:{a}:secret:{t}",
    "AWS::Lambda::Function": "{t}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{t}",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{t}",
    "AWS::KMS::Key": "{t}",
    "AWS::Events::EventBus": "{t}",
    "AWS::Scheduler::ScheduleGroup": "{t}",
    "AWS::Logs::LogGroup": "{t}",
    "AWS::S3::Bucket": "{t}",
}
_ATTR_FORMS: dict[tuple[str, str], str] = {
    ("AWS::DynamoDB::Table", "Arn"): "arn:aws:dynamodb:{r}:{a}:table/{t}",
    ("AWS::DynamoDB::Table", "StreamArn"): "arn:aws:dynamodb:{r}:{a}:table/{t}/stream/*",
    ("AWS::SQS::Queue", "Arn"): "arn:aws:sqs:{r}:{a}:{t}",
    ("AWS::SQS::Queue", "QueueName"): "{t}",
    ("AWS::SQS::Queue", "QueueUrl"): "https://sqs.{r}.amazonaws.com/{a}/{t}",
    ("AWS::SecretsManager::Secret", "Id"): "arn:aws:secretsmanager:{r}:{a}:secret:{t}",
    ("AWS::Lambda::Function", "Arn"): "arn:aws:lambda:{r}:{a}:function:{t}",
    ("AWS::StepFunctions::StateMachine", "Arn"): "arn:aws:states:{r}:{a}:stateMachine:{t}",
    ("AWS::StepFunctions::StateMachine", "Name"): "{t}",
    ("AWS::SNS::Topic", "TopicArn"): "arn:aws:sns:{r}:{a}:{t}",
    ("AWS::SNS::Topic", "TopicName"): "{t}",
    ("AWS::KMS::Key", "Arn"): "arn:aws:kms:{r}:{a}:key/{t}",
    ("AWS::Events::EventBus", "Arn"): "arn:aws:events:{r}:{a}:event-bus/{t}",
    ("AWS::Scheduler::ScheduleGroup", "Arn"): "arn:aws:scheduler:{r}:{a}:schedule-group/{t}",
    ("AWS::Logs::LogGroup", "Arn"): "arn:aws:logs:{r}:{a}:log-group:{t}:*",
    ("AWS::S3::Bucket", "Arn"): "arn:aws:s3:::{t}",
    ("AWS::IAM::Role", "Arn"): "arn:aws:iam::{a}:role/{t}",
}


class UnresolvedError(ValueError):
    """A policy refers to something this checker cannot put in canonical form."""


@dataclass
class Resolver:
    """Resolves the intrinsic functions of a translated template to canonical strings."""

    template: Mapping[str, Any]

    def _type(self, logical_id: str) -> str:
        resource = self.template.get("Resources", {}).get(logical_id)
        if resource is None:
            raise UnresolvedError(f"no resource {logical_id}")
        return str(resource["Type"])

    def ref(self, name: str) -> str:
        if name in ("AWS::Region",):
            return REGION
        if name == "AWS::AccountId":
            return ACCOUNT
        if name == "AWS::Partition":
            return "aws"
        if name == "AWS::URLSuffix":
            return "amazonaws.com"
        parameters = self.template.get("Parameters", {})
        if name in parameters:
            return str(parameters[name].get("Default", ""))
        form = _REF_FORMS.get(self._type(name), "{t}")
        return form.format(t=_token(name), r=REGION, a=ACCOUNT)

    def get_att(self, logical_id: str, attribute: str) -> str:
        form = _ATTR_FORMS.get((self._type(logical_id), attribute))
        if form is None:
            raise UnresolvedError(f"Fn::GetAtt {logical_id}.{attribute} ({self._type(logical_id)})")
        return form.format(t=_token(logical_id), r=REGION, a=ACCOUNT)

    def resolve(self, value: Any) -> list[str]:
        """Every string the value can be (Fn::If gives both branches)."""
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [s for item in value for s in self.resolve(item)]
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            intrinsic = _INTRINSICS.get(fn)
            if intrinsic is not None:
                return intrinsic(self, arg)
        raise UnresolvedError(f"cannot resolve {value!r}")

    def _ref_values(self, arg: Any) -> list[str]:
        return [self.ref(arg)]

    def _get_att_values(self, arg: Any) -> list[str]:
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return [self.get_att(logical_id, attribute)]

    def _sub_values(self, arg: Any) -> list[str]:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        return [self._sub(text, variables)]

    def _join_values(self, arg: Any) -> list[str]:
        separator, parts = arg
        return [separator.join(self._one(part) for part in parts)]

    def _if_values(self, arg: Any) -> list[str]:
        return self.resolve(arg[1]) + self.resolve(arg[2])

    def _one(self, value: Any) -> str:
        values = self.resolve(value)
        if len(values) != 1:
            raise UnresolvedError(f"{value!r} has several values")
        return values[0]

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return self._one(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}!][^}]*)\}", replace, text)


_NAME_TOKEN = re.compile(r"[^:/]+")


# The intrinsic functions a policy's resources use -> every string each can give.
_INTRINSICS: dict[str, Callable[[Resolver, Any], list[str]]] = {
    "Ref": Resolver._ref_values,
    "Fn::GetAtt": Resolver._get_att_values,
    "Fn::Sub": Resolver._sub_values,
    "Fn::Join": Resolver._join_values,
    "Fn::If": Resolver._if_values,
}


def canonical_resource(arn: str, logical_ids: Iterable[str]) -> str:
    """A recorded ARN with region/account placeholders and names mapped to `<<LogicalId>>`."""
    if arn == "*":
        return arn
    ids = sorted(logical_ids, key=len, reverse=True)
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn":
        if parts[3]:
            parts[3] = REGION
        if parts[4]:
            parts[4] = ACCOUNT
        if parts[2] == "secretsmanager":  # the ARN ends in `-` and six random characters
            parts[5] = re.sub(r"-[A-Za-z0-9]{6}$", "", parts[5])
        head, resource = ":".join(parts[:5]), parts[5]
    else:
        head, resource = "", arn

    def name(match: re.Match[str]) -> str:
        word = match.group(0)
        for logical_id in ids:
            if word == logical_id or word.endswith(f"-{logical_id}"):
                return _token(logical_id)
        return word

    return f"{head}:{_NAME_TOKEN.sub(name, resource)}" if head else _NAME_TOKEN.sub(name, resource)


# --- policies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    source: str

    def matches_action(self, action: str) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in self.actions)

    def matches_resource(self, resource: str) -> bool:
        return any(_resource_match(pattern, resource) for pattern in self.resources)


def _resource_match(pattern: str, resource: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, resource) is not None


@dataclass
class Role:
    principal: str
    role_id: str
    statements: list[Statement] = field(default_factory=list)
    unknown_managed: list[str] = field(default_factory=list)

    def decide(self, auth: Authorization) -> bool:
        relevant = [s for s in self.statements if s.matches_action(auth.action) and s.matches_resource(auth.resource)]
        if any(s.effect == "Deny" for s in relevant):
            return False
        return any(s.effect == "Allow" for s in relevant)

    def granted(self) -> set[tuple[str, str]]:
        return {(a, r) for s in self.statements if s.effect == "Allow" for a in s.actions for r in s.resources}


def _statements(document: Mapping[str, Any], resolver: Resolver, source: str) -> Iterator[Statement]:
    raw = document.get("Statement", [])
    for statement in [raw] if isinstance(raw, dict) else raw:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        resources_list = resources if isinstance(resources, list) else [resources]
        yield Statement(
            effect=statement.get("Effect", "Allow"),
            actions=tuple([actions] if isinstance(actions, str) else actions),
            resources=tuple(r for item in resources_list for r in resolver.resolve(item)),
            source=source,
        )


def role_of(role_id: str, translated: Mapping[str, Any], principal: str) -> Role:
    resolver = Resolver(translated)
    props = translated["Resources"][role_id].get("Properties", {})
    role = Role(principal=principal, role_id=role_id)
    for policy in props.get("Policies", []):
        role.statements.extend(_statements(policy["PolicyDocument"], resolver, policy.get("PolicyName", role_id)))
    for arn in props.get("ManagedPolicyArns", []):
        arn_text = resolver._one(arn)
        if arn_text in MANAGED_POLICIES:
            role.statements.extend(_statements({"Statement": MANAGED_POLICIES[arn_text]}, resolver, arn_text))
        else:
            role.unknown_managed.append(arn_text)
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        attached = resource["Properties"].get("Roles", [])
        if any(isinstance(r, dict) and r.get("Ref") == role_id for r in attached):
            role.statements.extend(_statements(resource["Properties"]["PolicyDocument"], resolver, logical_id))
    return role


def _role_id(value: Any) -> str:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    raise UnresolvedError(f"role given as {value!r}, not Fn::GetAtt of a role in the template")


def roles(translated: Mapping[str, Any]) -> dict[str, Role]:
    """Each function's and state machine's role, by the principal's logical ID."""
    found: dict[str, Role] = {}
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            found[logical_id] = role_of(_role_id(resource["Properties"]["Role"]), translated, logical_id)
        elif resource["Type"] == "AWS::StepFunctions::StateMachine":
            found[logical_id] = role_of(_role_id(resource["Properties"]["RoleArn"]), translated, logical_id)
    return found


def state_machines(translated: Mapping[str, Any]) -> list[str]:
    return [k for k, r in translated["Resources"].items() if r["Type"] == "AWS::StepFunctions::StateMachine"]


# --- what a state machine's definition calls -------------------------------------------------


def definition_calls(
    sam_template: Mapping[str, Any], translated: Mapping[str, Any]
) -> list[tuple[str, str, Authorization]]:
    """(state machine, state, authorization) for every Task state of every definition."""
    resolver = Resolver(translated)
    calls: list[tuple[str, str, Authorization]] = []
    for logical_id, resource in sam_template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = resource["Properties"]
        if "Definition" in props:
            definition = props["Definition"]
        else:
            definition = json.loads((REPO_ROOT / props["DefinitionUri"]).read_text(encoding="utf-8"))
        substitutions = {k: resolver._one(v) for k, v in props.get("DefinitionSubstitutions", {}).items()}
        for state_name, state in _task_states(definition):
            for auth in _task_authorizations(state, substitutions):
                calls.append((logical_id, state_name, auth))
    return calls


def _task_states(definition: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, state in definition.get("States", {}).items():
        if state.get("Type") == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from _task_states(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _task_states(state[key])


def _substitute(text: str, substitutions: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: substitutions.get(m.group(1), m.group(0)), text)


def _task_authorizations(state: Mapping[str, Any], substitutions: Mapping[str, str]) -> Iterator[Authorization]:
    resource = _substitute(str(state["Resource"]), substitutions)
    params = state.get("Parameters") or state.get("Arguments") or {}
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        function = _substitute(str(params.get("FunctionName", params.get("FunctionName.$", "*"))), substitutions)
        yield Authorization("lambda:InvokeFunction", function)
    elif ":lambda:" in resource and ":function:" in resource:
        yield Authorization("lambda:InvokeFunction", resource)
    elif resource.startswith("arn:aws:states:::"):
        service_action = resource.removeprefix("arn:aws:states:::").split(".", 1)[0]
        service, _, action = service_action.partition(":")
        yield Authorization(f"{service}:{action[:1].upper()}{action[1:]}", "*")
    else:
        yield Authorization("states:Unknown", resource)


# --- what an event source mapping does with the function's role ---------------------------------

# Lambda polls an event source as the function's execution role, and refuses to create the
# mapping when the role lacks these (moto creates it anyway).
_ESM_ACTIONS = {
    "sqs": ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"),
    "dynamodb": ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"),
    "kinesis": ("kinesis:DescribeStream", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"),
}
_DESTINATION_ACTIONS = {"sqs": "sqs:SendMessage", "sns": "sns:Publish", "s3": "s3:PutObject"}


def event_source_calls(translated: Mapping[str, Any]) -> list[tuple[str, str, Authorization]]:
    """(function, mapping, authorization) for every event source mapping of the template: the
    polling actions on its source and the send to its on-failure destination."""
    resolver = Resolver(translated)
    calls: list[tuple[str, str, Authorization]] = []
    for mapping_id, resource in translated["Resources"].items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        props = resource["Properties"]
        function = props.get("FunctionName")
        function_id = function.get("Ref") if isinstance(function, Mapping) else None
        if not function_id:
            continue
        source = resolver._one(props["EventSourceArn"])
        service = source.split(":")[2] if source.startswith("arn:") else ""
        for action in _ESM_ACTIONS.get(service, ()):
            calls.append((function_id, mapping_id, Authorization(action, source)))
        destination = (props.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        if destination is not None:
            target = resolver._one(destination)
            target_service = target.split(":")[2] if target.startswith("arn:") else ""
            if target_service in _DESTINATION_ACTIONS:
                calls.append((function_id, mapping_id, Authorization(_DESTINATION_ACTIONS[target_service], target)))
    return calls


# --- the operator policy for the CLI ---------------------------------------------------------


def operator_policy(readme: Path = README) -> dict[str, Any]:
    """The IAM policy docs/operations.md gives operators (the JSON block after its marker line)."""
    text = readme.read_text(encoding="utf-8")
    marker = "<!-- operator-policy -->"
    if marker not in text:
        raise SystemExit(f"{readme.name}: no `{marker}` block with the operator's IAM policy")
    block = text.split(marker, 1)[1].split("```json", 1)[1].split("```", 1)[0]
    policy: dict[str, Any] = json.loads(block)
    return policy


def operator_role(translated: Mapping[str, Any], readme: Path = README) -> Role:
    role = Role(principal=CLI_PRINCIPAL, role_id="README operator policy")
    for statement in operator_policy(readme).get("Statement", []):
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        role.statements.append(
            Statement(
                effect=statement.get("Effect", "Allow"),
                actions=tuple([actions] if isinstance(actions, str) else actions),
                resources=tuple(
                    _operator_resource(r) for r in ([resources] if isinstance(resources, str) else resources)
                ),
                source="README",
            )
        )
    return role


def _readme_resource(canonical: str) -> str:
    """A canonical ARN the CLI used, written as the README's policy writes resources."""
    text = canonical.replace(REGION, "*").replace(ACCOUNT, "*")
    if text.startswith("arn:aws:states:"):
        text = re.sub(r"<<(\w+)>>", r"*\1*", text)
        return re.sub(r"^(arn:aws:states:\*:\*:execution:[^:]+):.*$", r"\1:*", text)
    if text.startswith("arn:aws:cloudformation:"):
        return re.sub(r":stack/[^/]+/", ":stack/<stack>/", text)
    return re.sub(r"<<(\w+)>>", r"<stack>-\1-*", text)


def policy_for(calls: Iterable[Mapping[str, Any]], logical_ids: Iterable[str]) -> dict[str, Any]:
    """The least IAM policy that allows these calls (one statement per resource)."""
    ids = list(logical_ids)
    by_resource: dict[str, set[str]] = {}
    for call in calls:
        resource = _readme_resource(canonical_resource(call["resource"], ids))
        by_resource.setdefault(resource, set()).add(call["action"])
    statements = [
        {"Effect": "Allow", "Action": sorted(actions), "Resource": resource}
        for resource, actions in sorted(by_resource.items())
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def _operator_resource(pattern: str) -> str:
    """The README writes `arn:aws:dynamodb:*:*:table/<stack>-AffiliatesTable-*` forms; the
    stack and the random suffix CloudFormation adds are wildcards, the logical ID stays."""
    return re.sub(r"<stack>-(\w+)-\*", lambda m: _token(m.group(1)), pattern).replace("<stack>", "*")


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Denied:
    principal: str
    action: str
    resource: str
    role: str

    def __str__(self) -> str:
        return f"{self.principal}: {self.action} on {self.resource} is not allowed by {self.role}"


@dataclass
class Report:
    denied: list[Denied] = field(default_factory=list)
    checked: int = 0
    used: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    unused: dict[str, list[str]] = field(default_factory=dict)  # `resource: action, action` per principal
    unused_grants: list[Grant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_calls(path: Path = CALL_LOG) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(
    calls: Iterable[Mapping[str, Any]],
    translated: Mapping[str, Any],
    sam_template: Mapping[str, Any],
    *,
    readme: Path | None = README,
) -> Report:
    principals = roles(translated)
    if readme is not None:
        principals[CLI_PRINCIPAL] = operator_role(translated, readme)
    check = _Check(Report(), principals, list(translated["Resources"]), state_machines(translated))
    check.note_unknown_managed_policies()
    check.recorded_calls(calls)
    check.event_sources(translated)
    check.definitions(sam_template, translated)
    indexless = _indexless_tables(translated)
    templates = policy_templates(sam_template)
    for principal, role in principals.items():
        grants = _unused(role, check.report.used.get(principal, set()), indexless, templates)
        check.report.unused_grants.extend(grants)
        by_resource: dict[str, set[str]] = {}
        for grant in grants:
            by_resource.setdefault(grant.resource, set()).add(grant.action)
        check.report.unused[principal] = [
            f"{resource}: {', '.join(sorted(actions))}" for resource, actions in sorted(by_resource.items())
        ]
    return check.report


def policy_templates(sam_template: Mapping[str, Any]) -> dict[str, str]:
    """The translated policy's name (`IngestFunctionRolePolicy1`) -> the SAM policy template
    it came from (`DynamoDBWritePolicy`), for each function's and state machine's Policies."""
    names: dict[str, str] = {}
    for logical_id, resource in sam_template.get("Resources", {}).items():
        policies = resource.get("Properties", {}).get("Policies", [])
        for index, policy in enumerate(policies if isinstance(policies, list) else [policies]):
            name = next(iter(policy)) if isinstance(policy, dict) and policy else str(policy)
            names[f"{logical_id}RolePolicy{index}"] = name
    return names


@dataclass
class _Check:
    """The steps of `evaluate`, each adding what it checks to one report."""

    report: Report
    principals: dict[str, Role]
    logical_ids: list[str]
    machines: list[str]

    def _record(self, principal: str, auth: Authorization, denied: Denied | None) -> None:
        self.report.checked += 1
        if denied is not None:
            self.report.denied.append(denied)
        self.report.used.setdefault(principal, set()).add((auth.action, auth.resource))

    def note_unknown_managed_policies(self) -> None:
        for role in self.principals.values():
            for arn in role.unknown_managed:
                self.report.notes.append(
                    f"{role.principal}: managed policy {arn} not modelled; its grants are not counted"
                )

    def recorded_calls(self, calls: Iterable[Mapping[str, Any]]) -> None:
        """Each distinct recorded call, against the role of the principal that made it."""
        seen: set[tuple[str, str, str]] = set()
        for call in calls:
            key = (call["principal"], call["action"], call["resource"])
            if key in seen or _local_only(call):
                seen.add(key)
                continue
            seen.add(key)
            if call.get("kind") == "state_machine" or call["principal"] == STATE_MACHINE_PRINCIPAL:
                self._state_machine_call(call)
            else:
                self._principal_call(call["principal"], call["action"], call["resource"])

    def _principal_call(self, principal: str, action: str, resource: str) -> None:
        role = self.principals.get(principal)
        auth = Authorization(action, canonical_resource(resource, self.logical_ids))
        if role is None:
            self.report.checked += 1
            self.report.denied.append(Denied(principal, action, resource, "no role in the translated template"))
            return
        denied = None if role.decide(auth) else Denied(principal, action, resource, f"role {role.role_id}")
        self._record(principal, auth, denied)

    def _state_machine_call(self, call: Mapping[str, Any]) -> None:
        # moto runs every state machine's Tasks through one client: a call counts for the
        # machine whose role allows it, and fails when none does.
        principal = call["principal"]
        auth = Authorization(call["action"], canonical_resource(call["resource"], self.logical_ids))
        if "<<" not in auth.resource:
            # A state machine a test built around a function of its own (the router's
            # tests): the template's machines are checked on their definitions below.
            self.report.notes.append(f"not a template resource, skipped: {principal} {auth.action} {call['resource']}")
            return
        allowed_by = [m for m in self.machines if self.principals[m].decide(auth)]
        self.report.checked += 1
        if not allowed_by:
            self.report.denied.append(Denied(principal, call["action"], call["resource"], "no state machine role"))
        for machine in allowed_by:
            self.report.used.setdefault(machine, set()).add((auth.action, auth.resource))

    def event_sources(self, translated: Mapping[str, Any]) -> None:
        """The reads Lambda's event source mappings make as the function's role."""
        for function_id, mapping_id, auth in event_source_calls(translated):
            function_role = self.principals.get(function_id)
            denied = None
            if function_role is None or not function_role.decide(auth):
                where = f"role {function_role.role_id}" if function_role else "no role in the translated template"
                denied = Denied(f"{function_id} (event source {mapping_id})", auth.action, auth.resource, where)
            self._record(function_id, auth, denied)

    def definitions(self, sam_template: Mapping[str, Any], translated: Mapping[str, Any]) -> None:
        """Each Task state of each state machine's definition, against the machine's role."""
        for machine, state, auth in definition_calls(sam_template, translated):
            role = self.principals[machine]
            denied = None
            if not role.decide(auth):
                denied = Denied(f"{machine} (state {state})", auth.action, auth.resource, f"role {role.role_id}")
            self._record(machine, auth, denied)


def _local_only(call: Mapping[str, Any]) -> bool:
    """A call the CLI makes only against the local stack (no deployed stack has it)."""
    return call["principal"] == CLI_PRINCIPAL and any(
        call["action"] == action and call["resource"].endswith(suffix) for action, suffix in LOCAL_ONLY_CLI_CALLS
    )


def _indexless_tables(translated: Mapping[str, Any]) -> set[str]:
    return {
        logical_id
        for logical_id, resource in translated["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
        and not {"GlobalSecondaryIndexes", "LocalSecondaryIndexes"} & set(resource.get("Properties", {}))
    }


def _unused(role: Role, used: set[tuple[str, str]], indexless: set[str], templates: Mapping[str, str]) -> list[Grant]:
    """Granted (action, resource) pairs of the role's own policies that no call used (the AWS
    managed policies' `*` grants, and the `/index/*` grants on tables that have no index, are
    left out)."""
    unused: set[Grant] = set()
    for statement in role.statements:
        if statement.effect != "Allow" or statement.source.startswith("arn:aws:iam::aws:policy/"):
            continue
        for resource in statement.resources:
            if any(resource.endswith(f"<<{table}>>/index/*") for table in indexless):
                continue
            for action in statement.actions:
                hit = any(
                    fnmatch.fnmatchcase(used_action.lower(), action.lower())
                    and _resource_match(resource, used_resource)
                    for used_action, used_resource in used
                )
                if not hit:
                    policy = templates.get(statement.source, statement.source)
                    unused.add(Grant(role.principal, _short(resource), action, policy))
    return sorted(unused, key=lambda g: (g.principal, g.resource, g.action, g.policy))


def _short(resource: str) -> str:
    """`arn:aws:dynamodb:{region}:{account}:table/<<X>>/index/*` -> `X/index/*`."""
    match = re.search(r"<<(\w+)>>(.*)$", resource)
    return f"{match.group(1)}{match.group(2)}" if match else resource


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def evaluate_every_variant(calls: list[dict[str, Any]], sam_template: dict[str, Any]) -> Report:
    """`evaluate` on the template as deployed with each of VARIANTS (each front, IngestFront):
    a call denied under any of them is denied."""
    report = evaluate(calls, translate(sam_template), sam_template)
    for values in VARIANTS[1:]:
        variant = with_parameters(sam_template, values)
        for denied in evaluate(calls, translate(variant), variant).denied:
            if denied not in report.denied:
                report.denied.append(denied)
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else CALL_LOG
    calls = read_calls(path)
    if not calls:
        _say(f"iam: no recorded calls in {path} (run the integration, reliability and e2e suites first)")
        return 1
    report = evaluate_every_variant(calls, load_template())
    principals = sorted({c["principal"] for c in calls})
    _say(
        f"iam: {report.checked} distinct (principal, action, resource) checked from {len(calls)} records;"
        f" principals: {', '.join(principals)}"
    )
    for note in report.notes:
        _say(f"note: {note}")
    for principal in sorted(set(report.unused) - set(report.used)):
        _say(f"note: no call of {principal} was recorded; the suites do not exercise its role")
    allowed = unused_grants.explained(report.unused_grants)
    for grant in allowed:
        _say(f"granted, never used by a test, allowed: {grant}: {unused_grants.reason_for(grant)}")
    for entry in unused_grants.stale(report.unused_grants):
        _say(f"note: allowed unused, but used by a test now or no longer granted (remove it): {entry}")
    unexplained = unused_grants.unexplained(report.unused_grants)
    cli_calls = [
        c
        for c in calls
        if c["principal"] == CLI_PRINCIPAL
        and not any(c["action"] == a and c["resource"].endswith(x) for a, x in LOCAL_ONLY_CLI_CALLS)
    ]
    if cli_calls:
        policy = policy_for(cli_calls, list(load_template()["Resources"]))
        write_path = BUILD_DIR / "operator-policy.json"
        write_path.parent.mkdir(parents=True, exist_ok=True)
        write_path.write_text(json.dumps(policy, indent=2) + "\n", encoding="utf-8")
        _say(f"the CLI's recorded calls as an IAM policy: {write_path} (README's must cover it)")
    for denied in report.denied:
        _say(f"DENIED: {denied}")
    for line in unused_grants.failures(unexplained):
        _say(line)
    return 1 if report.denied or unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
