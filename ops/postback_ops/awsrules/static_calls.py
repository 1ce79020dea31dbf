"""IAM without test coverage: every AWS call site each function ships, read from its code
(AST), checked against its role in the translated template.

`make iam` checks the calls the suites made; a path no test takes (moto never answers like
AWS in some corner) is never recorded, so a missing grant there stays hidden until AWS says
AccessDenied. This pass reads the code instead:

1. Call sites. In every adapter class of the shared layer (`postback_relay.adapters`) whose
   constructor takes a boto3 client (annotated `DynamoDBClient`, `SQSClient`, `SNSClient`,
   `SFNClient`, or built with `boto3.client("<service>")`), each `self.<attr>.<method>` whose
   method is an operation of that service (botocore's model: `client.get_item`,
   `client.send_message_batch`, a bound method handed on as `items_of(self._client.scan, ...)`,
   `get_paginator("query")`) is a call site. Its resource is the `TableName` / `QueueUrl` /
   `TopicArn` / `stateMachineArn` / `SecretId` it passes (directly, or in a request dict the
   method builds) when that is a `self._x` set from a constructor parameter; else every
   resource the instance was given is checked (the conservative reading).
2. Instances. From each function's handler code, every `wiring.<builder>(...)` call is
   followed into postback_relay.wiring: calls to other builders are followed with their
   arguments bound, and each adapter class constructed there is an instance whose
   constructor arguments are traced back to `settings.<field>`, i.e. the function's
   environment variable `<FIELD>` in template.yaml (settings_from_environ reads exactly
   those), i.e. the resource the template gives it (`!Ref ConversionsTable`).
3. Powertools' `parameters.get_secret(...)` in a function's code is secretsmanager's
   GetSecretValue, on every secret the function's environment names.

Each (action, resource) is put through `calls.authorizations` (the action IAM checks, the
ARN built from the call's parameters) and decided by the role `iam.roles` reads from the
translated template: the same canonical forms and policy evaluation as `make iam`.

`python -m postback_ops.awsrules.static_calls` prints the call sites per function; exit 1
names each call the role would deny.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session

from postback_ops.awsrules.calls import Authorization, authorizations
from postback_ops.awsrules.iam import ACCOUNT, REGION, Resolver, Role, UnresolvedError, roles
from postback_ops.awsrules.translate import translate
from postback_ops.template import REPO_ROOT, function_code, load_template, resources_of_type

SHARED = REPO_ROOT / "layers" / "shared" / "postback_relay"
ADAPTERS = SHARED / "adapters"
WIRING = SHARED / "wiring.py"

# A client's type annotation (mypy_boto3) -> botocore's service name.
_CLIENT_TYPES = {"DynamoDBClient": "dynamodb", "SQSClient": "sqs", "SNSClient": "sns", "SFNClient": "stepfunctions"}
# The parameter that names a call's resource, per service.
_RESOURCE_PARAMS = {
    "dynamodb": "TableName",
    "sqs": "QueueUrl",
    "sns": "TopicArn",
    "stepfunctions": "stateMachineArn",
    "secretsmanager": "SecretId",
}
# The template resource types whose environment values stand for each service's resources.
_RESOURCE_TYPES = {
    "dynamodb": "AWS::DynamoDB::Table",
    "sqs": "AWS::SQS::Queue",
    "sns": "AWS::SNS::Topic",
    "stepfunctions": "AWS::StepFunctions::StateMachine",
    "secretsmanager": "AWS::SecretsManager::Secret",
}


# --- 1. call sites in the adapters ----------------------------------------------------------------


@cache
def _operations(service: str) -> dict[str, str]:
    """botocore's method name -> operation name (`get_item` -> `GetItem`)."""
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


@cache
def _signing_name(service: str) -> str:
    model = botocore.session.get_session().get_service_model(service)
    return str(model.signing_name or model.endpoint_prefix)


@dataclass(frozen=True)
class CallSite:
    """One AWS call in an adapter's code."""

    path: str
    line: int
    service: str
    operation: str
    resource_attr: str | None  # the `self._x` naming the resource; None: not read from the code
    method: str = ""  # the adapter method it is in


@dataclass
class AdapterClass:
    name: str
    service: str
    params: list[str]  # the constructor's parameters, in order (without self)
    attr_param: dict[str, str]  # `self._x` -> the constructor parameter it holds
    sites: list[CallSite] = field(default_factory=list)
    self_calls: dict[str, set[str]] = field(default_factory=dict)  # method -> the `self.<m>(...)` it calls

    def reached(self, called: set[str]) -> set[str]:
        """The methods run when the names in `called` are called on it (and what they call on self)."""
        todo = [m for m in self.self_calls if m in called]
        reached: set[str] = set()
        while todo:
            method = todo.pop()
            if method not in reached:
                reached.add(method)
                todo.extend(self.self_calls.get(method, set()) - reached)
        return reached


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _init_of(cls: ast.ClassDef) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)


def _service_of(init: ast.FunctionDef) -> str | None:
    text = ast.unparse(init)
    for client_type, service in _CLIENT_TYPES.items():
        if re.search(rf"\b{client_type}\b", text):
            return service
    match = re.search(r"boto3\.client\(['\"]([a-z0-9-]+)['\"]", text)
    return match.group(1) if match else None


def _attr_params(init: ast.FunctionDef, params: list[str]) -> dict[str, str]:
    """`self._x = param` and `self._x, self._client = table_and_client(param, client)`."""
    held: dict[str, str] = {}
    for node in ast.walk(init):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(value, ast.Name) and value.id in params and (attr := _self_attr(target)):
                held[attr] = value.id
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Call) and value.args:
                first, arg = target.elts[0], value.args[0]
                if isinstance(arg, ast.Name) and arg.id in params and (attr := _self_attr(first)):
                    held[attr] = arg.id
    return held


def _named_resource(node: ast.AST, key: str) -> str | None:
    """The `self._x` a call or dict in `node` passes as `key` (`TableName=self._table`)."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.keyword) and inner.arg == key and (attr := _self_attr(inner.value)):
            return attr
        if isinstance(inner, ast.Dict):
            for k, v in zip(inner.keys, inner.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == key and (attr := _self_attr(v)):
                    return attr
    return None


def _sites_of(cls: ast.ClassDef, path: Path, service: str) -> Iterator[CallSite]:
    operations = _operations(service)
    key = _RESOURCE_PARAMS.get(service, "")
    for method in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"):
        parents = {child: parent for parent in ast.walk(method) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(method):
            if not (isinstance(node, ast.Attribute) and _self_attr(node.value)):
                continue
            operation = operations.get(node.attr)
            parent = parents.get(node)
            if node.attr == "get_paginator" and isinstance(parent, ast.Call) and parent.args:
                literal = parent.args[0]
                operation = operations.get(str(literal.value)) if isinstance(literal, ast.Constant) else None
            if operation is None:
                continue
            # The resource: in the call itself, in the call it is handed to, else anywhere in the method
            # when it names exactly one.
            attr = _named_resource(parent, key) if isinstance(parent, ast.Call) else None
            if attr is None:
                found = {a for n in ast.walk(method) if (a := _named_resource(n, key)) is not None}
                attr = found.pop() if len(found) == 1 else None
            yield CallSite(str(path.relative_to(REPO_ROOT)), node.lineno, service, operation, attr, method.name)


def adapter_classes(root: Path = ADAPTERS) -> dict[str, AdapterClass]:
    """Every class of the adapters whose constructor takes or builds a boto3 client."""
    found: dict[str, AdapterClass] = {}
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            init = _init_of(cls)
            service = _service_of(init) if init else None
            if init is None or service is None:
                continue
            params = [a.arg for a in [*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs][1:]]
            adapter = AdapterClass(cls.name, service, params, _attr_params(init, params))
            adapter.sites = list(_sites_of(cls, path, service))
            adapter.self_calls = {
                m.name: {a for n in ast.walk(m) if isinstance(n, ast.Call) and (a := _self_attr(n.func))}
                for m in cls.body
                if isinstance(m, ast.FunctionDef)
            }
            found[cls.name] = adapter
    return found


# --- 2. instances: from a function's handler through wiring ---------------------------------------

_SETTINGS = "<settings>"


@dataclass(frozen=True)
class Env:
    """A value read from the function's environment variable `name`."""

    name: str


@dataclass(frozen=True)
class Instance:
    adapter: str
    given: tuple[tuple[str, Env], ...]  # constructor parameter -> the environment variable it got


@dataclass
class _Wiring:
    functions: dict[str, ast.FunctionDef]
    adapters: dict[str, AdapterClass]
    instances: set[Instance] = field(default_factory=set)
    followed: set[tuple[str, tuple[tuple[str, Any], ...]]] = field(default_factory=set)

    def value(self, node: ast.expr, scope: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Name):
            return scope.get(node.id)
        if isinstance(node, ast.Attribute) and self.value(node.value, scope) == _SETTINGS:
            return Env(node.attr.upper())
        return None

    def bind(self, params: list[str], call: ast.Call, scope: Mapping[str, Any]) -> dict[str, Any]:
        bound = {name: self.value(arg, scope) for name, arg in zip(params, call.args, strict=False)}
        bound.update({k.arg: self.value(k.value, scope) for k in call.keywords if k.arg})
        return bound

    def follow(self, name: str, call: ast.Call, scope: Mapping[str, Any]) -> None:
        """A call to wiring's builder `name`: its body, with its parameters bound."""
        builder = self.functions[name]
        params = [a.arg for a in [*builder.args.posonlyargs, *builder.args.args, *builder.args.kwonlyargs]]
        bound = self.bind(params, call, scope)
        key = (name, tuple(sorted((k, v) for k, v in bound.items() if v is not None)))
        if key in self.followed:
            return
        self.followed.add(key)
        self.walk(builder, bound, in_wiring=True)

    def walk(self, body: ast.AST, scope: Mapping[str, Any], *, in_wiring: bool) -> None:
        """Every call in `body`: a wiring builder's is followed (by its bare name inside wiring,
        as `wiring.<name>` elsewhere); an adapter class's is an instance."""
        for node in ast.walk(body):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            name = (
                callee.attr if isinstance(callee, ast.Attribute) else callee.id if isinstance(callee, ast.Name) else ""
            )
            wiring_call = (isinstance(callee, ast.Name) and in_wiring) or (
                isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name) and callee.value.id == "wiring"
            )
            if wiring_call and name in self.functions:
                self.follow(name, node, scope)
            elif name in self.adapters:
                given = self.bind(self.adapters[name].params, node, scope)
                envs = tuple(sorted((k, v) for k, v in given.items() if isinstance(v, Env)))
                self.instances.add(Instance(name, envs))


def _module_file(name: str) -> Path | None:
    """postback_relay.<x> -> its file in the shared layer (None: not the layer's)."""
    parts = name.split(".")
    if parts[0] != "postback_relay":
        return None
    base = SHARED.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imported(tree: ast.AST) -> set[Path]:
    """The shared layer's modules `tree` imports (anywhere in it), wiring and the adapters aside:
    those are followed through the builders and the instances instead."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
            names.append(node.module)
    files = {f for name in names if (f := _module_file(name)) is not None}
    return {f for f in files if f != WIRING and f.parent != ADAPTERS}


@dataclass
class FunctionCode:
    """What a function's code builds and calls."""

    instances: set[Instance]
    called: set[str]  # every `x.<name>(...)` in its code and the shared modules it reaches
    modules: set[Path]


def function_code_of(code_dir: Path, adapters: Mapping[str, AdapterClass], wiring: Path = WIRING) -> FunctionCode:
    """The adapter instances a function's code builds (directly or through wiring), and the
    method names its code (and the services it reaches) call."""
    tree = ast.parse(wiring.read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    walker = _Wiring(functions, dict(adapters))
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in sorted(code_dir.glob("*.py"))]
    for module in trees:
        walker.walk(module, {"settings": _SETTINGS}, in_wiring=False)
    todo = {f for t in trees for f in _imported(t)} | {
        f for name, _ in walker.followed for f in _imported(functions[name])
    }
    modules: set[Path] = set()
    while todo:
        path = todo.pop()
        modules.add(path)
        parsed = ast.parse(path.read_text(encoding="utf-8"))
        trees.append(parsed)
        todo |= _imported(parsed) - modules
    called = {
        node.func.attr
        for module in trees
        for node in ast.walk(module)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    return FunctionCode(walker.instances, called, modules)


def secret_reads(code_dir: Path) -> list[CallSite]:
    """Powertools' `parameters.get_secret(...)` calls in a function's own code."""
    sites = []
    for path in sorted(code_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_secret":
                sites.append(
                    CallSite(str(path.relative_to(REPO_ROOT)), node.lineno, "secretsmanager", "GetSecretValue", None)
                )
    return sites


# --- 3. against the roles -------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticDenied:
    principal: str
    site: CallSite
    authorization: Authorization
    role: str

    def __str__(self) -> str:
        where = f"{self.site.path}:{self.site.line}"
        return (
            f"{self.principal}: {self.authorization.action} on {self.authorization.resource}"
            f" ({where}) is not allowed by role {self.role}"
        )


@dataclass
class StaticReport:
    sites: dict[str, int] = field(default_factory=dict)  # principal -> call sites its code holds
    checked: dict[str, set[Authorization]] = field(default_factory=dict)
    denied: list[StaticDenied] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)


def _environment(translated: Mapping[str, Any], function_id: str) -> dict[str, Any]:
    props = translated["Resources"][function_id]["Properties"]
    variables: dict[str, Any] = (props.get("Environment") or {}).get("Variables", {})
    return variables


def _resources_in_environment(
    variables: Mapping[str, Any], translated: Mapping[str, Any], service: str
) -> dict[str, str]:
    """Environment variable -> the canonical resource it names, for the service's resource type."""
    wanted = _RESOURCE_TYPES.get(service)
    resolver = Resolver(translated)
    found: dict[str, str] = {}
    for name, value in variables.items():
        refs = re.findall(r"'(?:Ref|Fn::GetAtt)': \[?'(\w+)", str(value))
        if not refs or translated["Resources"].get(refs[0], {}).get("Type") != wanted:
            continue
        try:
            found[name] = resolver._one(value)
        except UnresolvedError:
            continue
    return found


def _authorizations(site: CallSite, resource: str) -> Iterator[Authorization]:
    key = _RESOURCE_PARAMS.get(site.service, "")
    params: dict[str, Any] = {key: resource}
    if site.operation in ("BatchGetItem", "BatchWriteItem"):
        params = {"RequestItems": {resource: {}}}
    yield from authorizations(_signing_name(site.service), site.operation, params, region=REGION, account=ACCOUNT)


def _resources_of(
    site: CallSite, instance: Instance | None, adapter: AdapterClass | None, by_env: Mapping[str, str]
) -> list[str]:
    """The canonical resources one call site of one instance reaches."""
    given = dict(instance.given) if instance else {}
    if adapter is not None and site.resource_attr is not None:
        param = adapter.attr_param.get(site.resource_attr)
        env = given.get(param) if param else None
        if env is not None:
            return [by_env[env.name]] if env.name in by_env else []
    # Not read from the code: every resource of the service the instance (or the function) was given.
    envs = [e.name for e in given.values()] if instance else list(by_env)
    return [by_env[name] for name in envs if name in by_env]


def check_function(
    function_id: str,
    code_dir: Path,
    role: Role,
    translated: Mapping[str, Any],
    adapters: Mapping[str, AdapterClass],
    report: StaticReport,
) -> None:
    variables = _environment(translated, function_id)
    work: list[tuple[CallSite, Instance | None, AdapterClass | None]] = [
        (site, None, None) for site in secret_reads(code_dir)
    ]
    code = function_code_of(code_dir, adapters)
    for instance in sorted(code.instances, key=lambda i: (i.adapter, i.given)):
        adapter = adapters[instance.adapter]
        reached = adapter.reached(code.called)
        work.extend((site, instance, adapter) for site in adapter.sites if site.method in reached)
    report.sites[function_id] = len({(s.path, s.line, s.operation) for s, _, _ in work})
    checked = report.checked.setdefault(function_id, set())
    for site, maybe_instance, maybe_adapter in work:
        by_env = _resources_in_environment(variables, translated, site.service)
        resources = _resources_of(site, maybe_instance, maybe_adapter, by_env)
        if not resources:
            report.unresolved.append(
                f"{function_id}: {site.service} {site.operation} at {site.path}:{site.line} names no resource"
                " the function's environment gives it"
            )
        for resource in resources:
            for auth in _authorizations(site, resource):
                checked.add(auth)
                if not role.decide(auth):
                    report.denied.append(StaticDenied(function_id, site, auth, role.role_id))


def evaluate(sam_template: Mapping[str, Any] | None = None, *, region: str | None = None) -> StaticReport:
    """Every function of the template: its code's call sites against its translated role."""
    sam_template = sam_template if sam_template is not None else load_template()
    translated = translate(sam_template, region=region)
    principals = roles(translated)
    adapters = adapter_classes()
    report = StaticReport()
    for function_id in resources_of_type(sam_template, "AWS::Serverless::Function"):
        code_dir = function_code(function_id, template=sam_template)[0]
        check_function(function_id, code_dir, principals[function_id], translated, adapters, report)
    return report


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def summary(report: StaticReport) -> Iterable[str]:
    for function_id in sorted(report.sites):
        checked = report.checked.get(function_id, set())
        yield f"{function_id}: {report.sites[function_id]} call sites, {len(checked)} (action, resource) checked"
        for auth in sorted(checked):
            yield f"  {auth.action} {auth.resource}"


def main(argv: list[str] | None = None) -> int:
    del argv
    report = evaluate()
    for line in summary(report):
        _say(line)
    for note in report.unresolved:
        _say(f"UNRESOLVED: {note}")
    for denied in report.denied:
        _say(f"DENIED: {denied}")
    _say(f"iam-static: {len(report.denied)} denied, {len(report.unresolved)} unresolved")
    return 1 if report.denied or report.unresolved else 0


if __name__ == "__main__":
    raise SystemExit(main())
