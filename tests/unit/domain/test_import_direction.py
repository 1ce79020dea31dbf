"""Imports run one way: adapters implement the ports over the domain and never reach up into
the services (nor log through Powertools, nor read the environment: a handler's wiring hands
them their clients and settings). Beside test_domain_purity, which guards the domain itself."""

import ast
from pathlib import Path

import pytest

import postback_relay.adapters

ADAPTERS_DIR = Path(postback_relay.adapters.__file__).parent
ADAPTERS = sorted(ADAPTERS_DIR.glob("*.py"))
FORBIDDEN_FOR_ADAPTERS = ("postback_relay.services", "aws_lambda_powertools", "os")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _reaches(module: str, forbidden: str) -> bool:
    return module == forbidden or module.startswith(f"{forbidden}.")


def test_every_adapter_module_is_found() -> None:
    # GIVEN the adapters package
    # WHEN its modules are listed
    names = {path.stem for path in ADAPTERS}
    # THEN the modules this test guards are there (it cannot pass by finding nothing)
    assert {"dynamodb", "dynamodb_deliveries", "http_sender", "sqs_queue", "sfn_runner"} <= names


def test_the_check_sees_a_forbidden_import() -> None:
    # GIVEN the module names an adapter importing a service would produce
    modules = {"postback_relay.services.dispatch", "postback_relay.services", "os.path"}
    # WHEN they are checked
    # THEN each is caught, and a look-alike is not
    assert all(any(_reaches(m, f) for f in FORBIDDEN_FOR_ADAPTERS) for m in modules)
    assert not any(_reaches("postback_relay.servicesx", f) for f in FORBIDDEN_FOR_ADAPTERS)


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: p.stem)
def test_adapters_import_no_service_powertools_or_environment(path: Path) -> None:
    # GIVEN an adapter module's source
    # WHEN its imports are read (those only for type checking included)
    modules = _imported_modules(path)
    # THEN none reaches a service, Powertools or the environment
    found = sorted(m for m in modules for f in FORBIDDEN_FOR_ADAPTERS if _reaches(m, f))
    assert not found, f"{path.name} imports {found}"
