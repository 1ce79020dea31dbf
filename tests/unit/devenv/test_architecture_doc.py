"""docs/architecture.md's claims that can be checked: every module and folder its layout block
lists exists, the ports it lists for each ports module are exactly that module's Protocols, and
the Protocols it says live nowhere but the ports modules live nowhere else (save the ones it
names as still outside)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ARCHITECTURE = REPO / "docs" / "architecture.md"
PORTS = REPO / "layers" / "shared" / "postback_relay" / "ports.py"
CLI_PORTS = REPO / "ops" / "postback_ops" / "ports.py"
SHIPPED = ("layers", "functions", "ops")
# In the layout block, a line indented this far or more continues the description above it.
DESCRIPTION_COLUMN = 20
ENTRY = re.compile(r"^(?P<indent> *)(?P<names>\S+(?:, \S+)*)(?: {2,}|$)")


def layout_block(text: str) -> str:
    after = text.split("## Layout", 1)[1]
    return after.split("```", 2)[1]


def layout_paths(block: str) -> list[str]:
    """The paths of the layout block's tree: a line's names, under the folder lines above it
    that are less indented (`a|b|c` in a name lists alternatives; `x, y` lists siblings)."""
    parents: list[tuple[int, str]] = []
    paths: list[str] = []
    for line in block.splitlines():
        match = ENTRY.match(line)
        if not line.strip() or match is None or len(match["indent"]) >= DESCRIPTION_COLUMN:
            continue
        indent = len(match["indent"])
        while parents and parents[-1][0] >= indent:
            parents.pop()
        base = parents[-1][1] if parents else ""
        for name in match["names"].split(", "):
            head, _, last = name.rpartition("/") if not name.endswith("/") else ("", "", name)
            alternatives = last.split("|")
            prefix = f"{head}/" if head else ""
            paths.extend(base + prefix + alternative for alternative in alternatives)
            if name.endswith("/"):
                parents.append((indent, base + name))
            elif len(alternatives) > 1:
                parents.append((indent, base + prefix))
    return paths


def listed_ports(text: str) -> list[str]:
    """The names in the layout's ports.py row: `every port ... nowhere else: A, B (+ C), ...`."""
    row = text.split("ports.py", 1)[1].split("the records they carry", 1)[0]
    return re.findall(r"\b[A-Z][A-Za-z]+\b", row.split("nowhere else", 1)[1])


def listed_cli_ports(text: str) -> list[str]:
    """The names in the layout's row of the CLI's ports: `the CLI's own ports, as Protocols: A, B`."""
    row = text.split("the CLI's own ports, as Protocols:", 1)[1].split("\n", 1)[0]
    return re.findall(r"\b[A-Z][A-Za-z]+\b", row)


def protocols_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(
            (isinstance(base, ast.Name) and base.id == "Protocol")
            or (isinstance(base, ast.Attribute) and base.attr == "Protocol")
            for base in node.bases
        )
    }


def protocols_outside_ports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for root in SHIPPED:
        for path in sorted((REPO / root).rglob("*.py")):
            if path in (PORTS, CLI_PORTS) or ".aws-sam" in path.parts:
                continue
            names = protocols_in(path)
            if names:
                found[path.relative_to(REPO).as_posix()] = names
    return found


def declared_exceptions(text: str) -> dict[str, set[str]]:
    """What the page names as still outside ports.py: `<path>` ... `Protocols outside ports.py: A, B`."""
    found: dict[str, set[str]] = {}
    for path, names in re.findall(r"Protocols outside ports\.py,\s+in\s+`([^`]+)`:\s+([A-Za-z,\s]+)", text):
        found[path] = {name.strip() for name in names.split(",") if name.strip()}
    return found


TEXT = ARCHITECTURE.read_text(encoding="utf-8")


def test_the_layout_block_is_read_as_a_tree() -> None:
    # GIVEN a small layout block in the page's own style
    block = """
top.yaml                 a file
pkg/                     a folder
  sub/                   a folder in it
    mod.py               a module
                         whose description goes on here
    a.py, b.py           two modules
  handler/h.py           a module in a subfolder
tests/unit|e2e           two suites
  fakes/                 beside them
"""
    # WHEN it is read
    paths = layout_paths(block)
    # THEN every line becomes its path under its folders, continuations are skipped
    assert paths == [
        "top.yaml",
        "pkg/",
        "pkg/sub/",
        "pkg/sub/mod.py",
        "pkg/sub/a.py",
        "pkg/sub/b.py",
        "pkg/handler/h.py",
        "tests/unit",
        "tests/e2e",
        "tests/fakes/",
    ]


@pytest.mark.parametrize("path", layout_paths(layout_block(TEXT)))
def test_every_path_of_the_layout_exists(path: str) -> None:
    # GIVEN a module or folder docs/architecture.md lists in its layout
    # THEN it is in the repository
    assert (REPO / path).exists(), f"docs/architecture.md lists {path}, which does not exist"


def test_the_layout_lists_the_pages_own_anchors() -> None:
    # GIVEN the layout as read
    paths = layout_paths(layout_block(TEXT))
    # THEN it is the tree (not an empty read): ports, wiring and the handlers are in it
    assert "layers/shared/postback_relay/ports.py" in paths
    assert "layers/shared/postback_relay/wiring.py" in paths
    assert "functions/ingest/ingest_handler.py" in paths


@pytest.mark.parametrize(("listed", "module"), [(listed_ports, PORTS), (listed_cli_ports, CLI_PORTS)])
def test_the_ports_it_lists_are_the_protocols_of_the_ports_module(
    listed: Callable[[str], list[str]], module: Path
) -> None:
    # GIVEN the ports the layout's row of a ports module names
    named = set(listed(TEXT))
    assert len(named) >= 3, named
    # WHEN the module's Protocols are read
    declared = protocols_in(module)
    # THEN the row names each of them, and nothing else
    assert sorted(named - declared) == [], f"docs/architecture.md names ports {module.name} does not declare"
    assert sorted(declared - named) == [], (
        f"{module.relative_to(REPO)} declares ports docs/architecture.md does not list"
    )


def test_no_protocol_lives_outside_ports_py_but_those_the_page_names() -> None:
    # GIVEN the Protocols declared in layers/, functions/ and ops/ outside ports.py
    outside = protocols_outside_ports()
    # THEN they are exactly the ones the page admits to, file by file
    assert outside == declared_exceptions(TEXT), (
        "docs/architecture.md says every port is in ports.py; these are not (move them, or name "
        f"them there as `Protocols outside ports.py, in `<path>`: A, B`): {outside}"
    )


def test_the_protocol_rule_sees_a_protocol(tmp_path: Path) -> None:
    # GIVEN a module declaring a Protocol as the CLI does
    module = tmp_path / "mod.py"
    module.write_text("from typing import Protocol\n\nclass Runner(Protocol):\n    def run(self) -> None: ...\n")
    # THEN the reader finds it
    assert protocols_in(module) == {"Runner"}
