"""The domain is pure: no AWS SDK, no environment, no HTTP client, and cheap to import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from unit.domain.source_imports import imported_modules

import postback_relay.domain

DOMAIN_DIR = Path(postback_relay.domain.__file__).parent
MODULES = sorted(DOMAIN_DIR.glob("*.py"))
FORBIDDEN_IMPORTS = {"boto3", "botocore", "os", "requests", "urllib3", "aws_lambda_powertools", "socket", "http"}


def _imported_roots(path: Path) -> set[str]:
    return {module.split(".")[0] for module in imported_modules(path)}


def test_every_domain_module_is_found() -> None:
    # GIVEN the domain package
    # WHEN its modules are listed
    names = {path.stem for path in MODULES}
    # THEN the modules this test guards are there (it cannot pass by finding nothing)
    assert {"addresses", "links", "tracker", "config", "render", "conversion", "signing", "errors", "events"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_domain_modules_import_no_sdk_environment_or_http(path: Path) -> None:
    # GIVEN a domain module's source
    # WHEN its imports are read
    roots = _imported_roots(path)
    # THEN none of them reaches AWS, the environment or the network
    assert not roots & FORBIDDEN_IMPORTS, f"{path.name} imports {sorted(roots & FORBIDDEN_IMPORTS)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_domain_modules_read_no_environment_variable(path: Path) -> None:
    # GIVEN a domain module's source
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # WHEN its names and attributes are searched for environment access
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    # THEN there is none
    assert not used & {"environ", "getenv", "putenv", "environb"}


def test_importing_the_domain_loads_no_sdk_nor_yaml() -> None:
    # GIVEN a fresh interpreter
    modules = ", ".join(f"postback_relay.domain.{path.stem}" for path in MODULES if path.stem != "__init__")
    code = (
        f"import sys, {modules}\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'yaml', 'requests') if m in sys.modules))"
    )
    # WHEN every domain module is imported
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    # THEN no heavy or AWS module came with them
    assert result.stdout.strip() == "[]"
