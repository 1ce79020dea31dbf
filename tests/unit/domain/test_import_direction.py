"""The arrows between the layers run one way: domain <- ports <- services, and adapters beside
the services (docs/architecture.md). Beside the domain's purity test, this reads every import,
those inside functions and under TYPE_CHECKING included, of the services, the ports and the
adapters.
"""

import ast
from pathlib import Path

import pytest
from unit.domain.source_imports import PACKAGE, imported_modules

SERVICES = sorted((PACKAGE / "services").rglob("*.py"))
ADAPTERS = sorted((PACKAGE / "adapters").rglob("*.py"))
PORTS = PACKAGE / "ports.py"
REPO = PACKAGE.parents[2]

# What a service may not know: the AWS SDK, HTTP clients, the environment, Powertools (the
# handlers' business) and the adapters (reached through the ports).
SERVICE_FORBIDDEN = (
    "boto3",
    "botocore",
    "mypy_boto3_",
    "requests",
    "urllib3",
    "os",
    "aws_lambda_powertools",
    "postback_relay.adapters",
    "postback_relay.wiring",
)
# An adapter implements a port over the domain: it never reaches up into a service, nor logs
# through Powertools, nor reads the environment (the wiring hands it its clients and settings).
ADAPTER_FORBIDDEN = ("postback_relay.services", "postback_relay.wiring", "aws_lambda_powertools", "os")
PORTS_ALLOWED_OWN = ("postback_relay.domain",)


def reaches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p if p.endswith("_") else p + ".") for p in prefixes)


def violations(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported_modules(path) if reaches(m, forbidden))


def test_the_layers_are_found() -> None:
    # GIVEN the package's layers
    # WHEN their modules are listed
    # THEN the guarded modules are there (this test cannot pass by finding nothing)
    assert {"dispatch", "ingest", "outbox", "waits"} <= {p.stem for p in SERVICES}
    assert {"dynamodb", "dynamodb_deliveries", "http_sender", "sqs_queue", "sfn_runner"} <= {p.stem for p in ADAPTERS}


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_services_know_no_sdk_http_client_environment_powertools_or_adapter(path: Path) -> None:
    # GIVEN a service module
    # WHEN its imports are read
    # THEN none reaches outside the domain and the ports
    assert violations(path, SERVICE_FORBIDDEN) == []


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_adapters_import_no_service_powertools_or_environment(path: Path) -> None:
    # GIVEN an adapter module
    # WHEN its imports are read
    # THEN it knows the ports and the domain, never a service, Powertools or the environment
    assert violations(path, ADAPTER_FORBIDDEN) == []


DOMAIN = sorted((PACKAGE / "domain").rglob("*.py"))
# The domain is the bottom floor: it knows nothing of this package above it (the ports carry
# its records and import them from it, never the other way).
DOMAIN_FORBIDDEN = (
    "postback_relay.ports",
    "postback_relay.services",
    "postback_relay.adapters",
    "postback_relay.wiring",
    "postback_relay.settings",
)
# ops/: the CLI builds what it uses through wiring (StackBackends) and reaches AWS through the
# adapters it is given, so no module of it imports an adapter; but for these two, whose
# adapter helpers are to move into a service (issue 28). The list is exact: fix one, drop it.
OPS = REPO / "ops" / "postback_ops"
OPS_OWN = sorted(p for p in OPS.glob("*.py"))
OPS_FORBIDDEN = ("postback_relay.adapters", "aws_lambda_powertools")
OPS_ADAPTER_IMPORTS_KNOWN = {
    "outbox_recovery.py": ["postback_relay.adapters.dynamodb_conversions"],
}


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_domain_imports_no_port_service_adapter_nor_wiring(path: Path) -> None:
    # GIVEN a domain module
    # WHEN its imports are read (those under TYPE_CHECKING too)
    # THEN none reaches a floor above the domain
    assert violations(path, DOMAIN_FORBIDDEN) == []


def test_the_cli_imports_no_adapter_but_the_known_one() -> None:
    # GIVEN every module of ops/postback_ops (its local stack and awsrules, which play AWS and
    # read the template, aside)
    assert OPS_OWN
    # WHEN their imports are read
    found = {
        path.name: sorted({".".join(m.split(".")[:3]) for m in violations(path, OPS_FORBIDDEN)}) for path in OPS_OWN
    }
    # THEN only the known module imports an adapter, and only those
    assert {name: wrong for name, wrong in found.items() if wrong} == OPS_ADAPTER_IMPORTS_KNOWN


# wiring is the one builder: no other module of the shipped code (the shared layer, the
# functions) imports boto3, so none can make a client or a session off the call budget
# (wiring.aws_config). ops/: the CLI's clients are the target's (target.py: its profile, region
# and budget); its local stack and awsrules play and read AWS and are not held to this.
FUNCTIONS = REPO / "functions"
SHIPPED = sorted([*PACKAGE.rglob("*.py"), *FUNCTIONS.rglob("*.py")])
WIRING = PACKAGE / "wiring.py"
BOTO3_ALLOWED = {WIRING}
OPS_BOTO3_ALLOWED = {OPS / "target.py"}
# The handlers' shared helpers sit below the composition root: the plumbing imports them, and
# wiring may use them, never the other way (observability -> coldstart -> wiring was a cycle).
BELOW_WIRING = [PACKAGE / "observability.py", PACKAGE / "coldstart.py"]


def boto3_importers(paths: list[Path]) -> set[Path]:
    return {path for path in paths if violations(path, ("boto3",))}


def test_only_wiring_imports_boto3_in_the_shipped_code() -> None:
    # GIVEN every module of the shared layer and of the functions (wiring among them)
    assert WIRING in SHIPPED
    # WHEN the ones importing boto3 (anywhere in them) are listed
    # THEN wiring alone builds clients
    assert boto3_importers(SHIPPED) == BOTO3_ALLOWED


def test_the_cli_builds_its_clients_through_its_target_alone() -> None:
    # GIVEN every module of ops/postback_ops (its local stack and awsrules aside)
    # WHEN the ones importing boto3 are listed
    # THEN only the target (the CLI's session per stack) does
    assert boto3_importers(OPS_OWN) == OPS_BOTO3_ALLOWED


def test_the_functions_reach_adapters_only_through_wiring() -> None:
    # GIVEN every module of functions/ (handlers and their plumbing)
    found = {
        str(path.relative_to(FUNCTIONS)): violations(path, ("postback_relay.adapters",))
        for path in sorted(FUNCTIONS.rglob("*.py"))
    }
    # WHEN their imports are read
    # THEN none imports an adapter
    assert found
    assert {name: wrong for name, wrong in found.items() if wrong} == {}


@pytest.mark.parametrize("path", BELOW_WIRING, ids=lambda p: p.name)
def test_observability_and_coldstart_do_not_reach_the_composition_root(path: Path) -> None:
    # GIVEN a helper the handlers' plumbing imports
    # WHEN its imports are read
    # THEN it knows neither wiring nor what wiring builds (services, adapters)
    assert violations(path, ("postback_relay.wiring", "postback_relay.services", "postback_relay.adapters")) == []


def test_ports_import_only_the_domain_of_this_package() -> None:
    # GIVEN ports.py
    own = {m for m in imported_modules(PORTS) if m.startswith("postback_relay")}
    # WHEN its own-package imports are read
    # THEN each is a domain module
    assert own
    assert {m for m in own if not reaches(m, PORTS_ALLOWED_OWN)} == set()


# awsrules checks AWS's rules on the template and the local stack plays AWS from it: both read it
# through postback_ops.template, and neither leans on the other.
AWSRULES = sorted((OPS / "awsrules").rglob("*.py"))
TEMPLATE_READERS = OPS / "template.py"


@pytest.mark.parametrize("path", AWSRULES, ids=lambda p: str(p.relative_to(OPS)))
def test_awsrules_imports_nothing_of_the_local_stack(path: Path) -> None:
    # GIVEN a module of awsrules
    # WHEN its imports are read
    # THEN none reaches postback_ops.local (the template readers are postback_ops.template)
    assert violations(path, ("postback_ops.local",)) == []


def test_the_template_readers_know_neither_the_local_stack_nor_awsrules() -> None:
    # GIVEN the module both read template.yaml with
    assert {"iam.py", "rules.py", "static_calls.py"} <= {p.name for p in AWSRULES}
    # WHEN its imports are read
    # THEN it imports neither of its two readers (nor anything of this repository)
    assert {m for m in imported_modules(TEMPLATE_READERS) if m.startswith(("postback_ops", "postback_relay"))} == set()


# The ports modules: the layer's, and the config script's own (its Backends over the layer's ports).
OPS_PORTS = OPS / "ports.py"
PORTS_MODULES = (PORTS, OPS_PORTS)
EVERY_MODULE = [
    path
    for root in ("layers", "functions", "ops")
    for path in sorted((REPO / root).rglob("*.py"))
    if ".aws-sam" not in path.parts
]


def is_protocol(node: ast.ClassDef) -> bool:
    return any(
        (isinstance(b, ast.Name) and b.id == "Protocol") or (isinstance(b, ast.Attribute) and b.attr == "Protocol")
        for b in node.bases
    )


def classes_of(path: Path) -> list[ast.ClassDef]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.ClassDef)]


def test_no_protocol_is_declared_outside_the_ports_modules() -> None:
    # GIVEN every module of layers/, functions/ and ops/ but the two ports modules
    assert PACKAGE / "services" / "dispatch.py" in EVERY_MODULE
    assert OPS / "cli_context.py" in EVERY_MODULE
    # WHEN its classes' bases are read
    declared = [
        f"{path.relative_to(REPO)}:{node.name}"
        for path in EVERY_MODULE
        if path not in PORTS_MODULES
        for node in classes_of(path)
        if is_protocol(node)
    ]
    # THEN no port is declared anywhere else
    assert declared == []


@pytest.mark.parametrize("path", PORTS_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_a_ports_module_declares_protocols_only(path: Path) -> None:
    # GIVEN a ports module
    classes = classes_of(path)
    assert classes
    # WHEN its classes are read
    # THEN each is a Protocol: the records the ports carry are the domain's (domain/records.py)
    assert [node.name for node in classes if not is_protocol(node)] == []


def test_the_clis_ports_know_only_the_domain_and_the_layers_ports() -> None:
    # GIVEN the config script's ports module
    own = {m for m in imported_modules(OPS_PORTS) if m.startswith(("postback_relay", "postback_ops"))}
    # WHEN its own imports are read
    # THEN each is the domain or the layer's ports
    assert own
    assert {m for m in own if not reaches(m, ("postback_relay.domain", "postback_relay.ports"))} == set()


@pytest.mark.parametrize(
    ("source", "forbidden", "expected"),
    [
        ("import boto3\n", SERVICE_FORBIDDEN, ["boto3"]),
        (
            "def f():\n    from aws_lambda_powertools import Logger\n",
            SERVICE_FORBIDDEN,
            ["aws_lambda_powertools", "aws_lambda_powertools.Logger"],
        ),
        (
            "if TYPE_CHECKING:\n    from mypy_boto3_sqs import SQSClient\n",
            SERVICE_FORBIDDEN,
            ["mypy_boto3_sqs", "mypy_boto3_sqs.SQSClient"],
        ),
        (
            "from postback_relay import adapters\n",
            SERVICE_FORBIDDEN,
            ["postback_relay.adapters"],
        ),
        (
            "from postback_relay.services.dispatch import Dispatcher\n",
            ADAPTER_FORBIDDEN,
            ["postback_relay.services.dispatch", "postback_relay.services.dispatch.Dispatcher"],
        ),
        ("import os.path\nfrom osmosis import x\n", SERVICE_FORBIDDEN, ["os.path"]),
        ("from postback_relay.servicesx import y\n", ADAPTER_FORBIDDEN, []),
        ("from postback_relay.domain.delivery import classify\n", SERVICE_FORBIDDEN, []),
    ],
)
def test_the_rule_catches_a_wrong_arrow(
    tmp_path: Path, source: str, forbidden: tuple[str, ...], expected: list[str]
) -> None:
    # GIVEN a module with one import
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    # WHEN its imports are checked
    # THEN a wrong arrow is named, and an allowed one is not
    assert violations(path, forbidden) == expected


# batch.py mirrors Powertools' batch utility, its two exception classes by their Powertools names.
ERRORS_MODULE = PACKAGE / "domain" / "errors.py"
ERRORS_ELSEWHERE_ALLOWED = {"batch.py:BatchProcessingError", "batch.py:UnexpectedBatchTypeError"}


def error_classes(path: Path) -> list[str]:
    """The public exception classes a module declares (a base named *Error or *Exception)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            bases = [
                b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases
            ]
            if any(base.endswith(("Error", "Exception")) for base in bases):
                found.append(node.name)
    return found


def test_every_error_class_is_in_errors_py() -> None:
    # GIVEN every module of the package
    elsewhere = {
        f"{path.relative_to(PACKAGE)}:{name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != ERRORS_MODULE
        for name in error_classes(path)
    }
    # WHEN the exception classes declared outside domain/errors.py are listed
    # THEN there are none but batch.py's Powertools names, and errors.py does hold the errors
    assert elsewhere == ERRORS_ELSEWHERE_ALLOWED
    assert {"DomainError", "DeliveryTransportError", "SettingsError", "PostbackNotDone"} <= set(
        error_classes(ERRORS_MODULE)
    )


def test_the_error_rule_sees_an_error_class(tmp_path: Path) -> None:
    # GIVEN a module declaring an error, a private control-flow exception and a plain class
    path = tmp_path / "module.py"
    path.write_text("class OopsError(ValueError): ...\nclass _Stop(Exception): ...\nclass Plain: ...\n")
    # WHEN its error classes are listed
    # THEN only the public error is
    assert error_classes(path) == ["OopsError"]
