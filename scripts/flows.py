"""Walk the three flows of issue 28 file by file, following the code's own imports, and print
each flow's files (layer, lines) and its arrows between layers.

    .venv/bin/python scripts/flows.py

From each entry (a handler's `lambda_handler`, a CLI command), the walk reaches what the code
names: the modules a reached module's top level imports (as Python loads them; a `TYPE_CHECKING`
import only where reached code names it), a reached function's own imports, the names it uses
(imported ones, the module's own functions and classes, `module.attr` through a module alias),
and a reached class's methods whose name some reached code uses as an attribute (`x.put`,
by name, whatever the object). A module's top-level statements are reached with it. A file is
touched when any of it is reached; an arrow is a distinct file -> file reference. Third-party imports are not followed.
"""

import ast
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "layers/shared", ROOT / "ops", *sorted(p for p in (ROOT / "functions").iterdir() if p.is_dir())]

FLOWS = {
    "conversion (ingest -> outbox -> dispatch -> affiliate)": [
        ("ingest_handler", "lambda_handler"),
        ("outbox_handler", "lambda_handler"),
        ("dispatch_handler", "lambda_handler"),
    ],
    "postback config (postback affiliate put -> store)": [("postback_ops.cli_affiliates", "put")],
    "test run (postback test start -> state machine tasks -> verdict)": [
        ("postback_ops.cli_testruns", "start"),
        ("testlink_handler", "lambda_handler"),
    ],
}

Node = tuple[str, str]  # (module, scope): "" the module's top level, "f", "C", "C.m"


def _index() -> dict[str, Path]:
    modules = {}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            parts = path.relative_to(source).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def layer(module: str, path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    name = module.rsplit(".", 1)[-1]
    if rel.startswith("functions/"):
        return "handler" if name.endswith("_handler") else "plumbing"
    if module.startswith("postback_ops.cli_") and name != "cli_context":
        return "handler"
    for part, kind in (("domain", "domain"), ("services", "service"), ("adapters", "adapters")):
        if f".{part}." in f".{module}." or module.endswith(f".{part}"):
            return kind
    if name in {"ports", "wiring"}:
        return "ports" if name == "ports" else "wiring"
    return "plumbing"


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)
    aliases: dict[str, Node | str] = field(default_factory=dict)  # name -> (module, symbol) or module
    loads: set[str] = field(default_factory=set)  # modules its top level imports (TYPE_CHECKING aside)

    def resolve(self, target: str | None, level: int) -> str:
        if not level:
            return target or ""
        package = self.name.split(".") if self.path.name == "__init__.py" else self.name.split(".")[:-1]
        base = ".".join(package[: len(package) - level + 1])
        return f"{base}.{target}" if target else base

    def top(self) -> list[ast.stmt]:
        """The top-level statements that run at import: neither a def nor a TYPE_CHECKING block."""
        return [s for s in self.tree.body if s not in self.defs.values() and not _type_checking(s)]


def _type_checking(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)


class Walk:
    def __init__(self) -> None:
        self.paths = _index()
        self.modules: dict[str, Module] = {}
        self.reached: set[Node] = set()
        self.attrs: set[str] = set()
        self.arrows: set[tuple[str, str]] = set()

    def module(self, name: str) -> Module | None:
        if name not in self.modules and name in self.paths:
            found = Module(name, self.paths[name], ast.parse(self.paths[name].read_text()))
            for stmt in found.tree.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    found.defs[stmt.name] = stmt
                if isinstance(stmt, ast.ClassDef):
                    methods = (i for i in stmt.body if isinstance(i, ast.FunctionDef | ast.AsyncFunctionDef))
                    found.defs |= {f"{stmt.name}.{item.name}": item for item in methods}
            for stmt in (s for s in found.tree.body if s not in found.defs.values()):
                for inner in ast.walk(stmt):
                    targets = self._bind(found, inner, found.aliases)
                    if not _type_checking(stmt):
                        found.loads |= {t if isinstance(t, str) else t[0] for t in targets}
            self.modules[name] = found
        return self.modules.get(name)

    def _bind(self, module: Module, stmt: ast.AST, aliases: dict[str, Node | str]) -> list[Node | str]:
        bound: list[Node | str] = []
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name
                bound.append(alias.name)
        elif isinstance(stmt, ast.ImportFrom):
            source = module.resolve(stmt.module, stmt.level)
            for alias in stmt.names:
                full = f"{source}.{alias.name}"
                target: Node | str = full if full in self.paths else (source, alias.name)
                aliases[alias.asname or alias.name] = target
                bound.append(target)
        return bound

    def reach(self, src: str | None, node: Node) -> None:
        module = self.module(node[0])
        if module is None:
            return
        if src is not None and src != node[0]:
            self.arrows.add((src, node[0]))
        if node in self.reached:
            return
        self.reached.add(node)
        self._scan(module, node[1])
        symbol = node[1]
        if symbol and symbol not in module.defs and symbol in module.aliases:  # a re-export
            self._follow(module, module.aliases[symbol])

    def _follow(self, module: Module, target: Node | str, attr: str | None = None) -> None:
        self.reach(module.name, (target, attr or "") if isinstance(target, str) else target)

    def _scope(self, module: Module, scope: str) -> list[ast.AST]:
        if scope == "":
            for load in sorted(module.loads):
                self.reach(module.name, (load, ""))
            return [*module.top()]
        self.reach(None, (module.name, ""))
        found = module.defs.get(scope)
        if isinstance(found, ast.ClassDef):
            return [*found.bases, *found.decorator_list, *(s for s in found.body if s not in module.defs.values())]
        return [found] if found is not None else []

    def _scan(self, module: Module, scope: str) -> None:
        nodes = self._scope(module, scope)
        local: dict[str, Node | str] = {}
        for stmt in (inner for top in nodes for inner in ast.walk(top)):
            for target in self._bind(module, stmt, local):
                self._follow(module, target)  # a function-level import runs when it is called
        aliases = {**module.aliases, **local}
        for expr in (inner for top in nodes for inner in ast.walk(top)):
            if isinstance(expr, ast.Attribute):
                self.attrs.add(expr.attr)
                if isinstance(expr.value, ast.Name) and isinstance(aliases.get(expr.value.id), str):
                    self._follow(module, aliases[expr.value.id], expr.attr)
            elif isinstance(expr, ast.Name) and expr.id in module.defs:
                self.reach(module.name, (module.name, expr.id))
            elif isinstance(expr, ast.Name) and expr.id in aliases:
                self._follow(module, aliases[expr.id])

    def run(self, entries: list[Node]) -> None:
        for entry in entries:
            self.reach(None, entry)
        while True:  # methods reached by the attribute names reached code uses, to a fixed point
            more = {
                (m.name, scope)
                for m in self.modules.values()
                for scope in m.defs
                if "." in scope
                and (m.name, scope.split(".")[0]) in self.reached
                and (scope.split(".")[1] in self.attrs or scope.split(".")[1].startswith("__"))
            } - self.reached
            if not more:
                return
            for node in sorted(more):
                self.reach(None, node)


def report(title: str, entries: list[Node]) -> list[str]:
    walk = Walk()
    walk.run(entries)
    files = {name: walk.modules[name].path for name, _ in walk.reached}
    lines = {name: len(path.read_text().splitlines()) for name, path in files.items()}
    out = [f"## {title}", f"entries: {', '.join(f'{m}.{s}' for m, s in entries)}"]
    for name in sorted(files, key=lambda n: (layer(n, files[n]), files[n].as_posix())):
        outgoing = sum(1 for a, _ in walk.arrows if a == name)
        rel = files[name].relative_to(ROOT).as_posix()
        out.append(f"  {layer(name, files[name]):9} {lines[name]:5}  {rel}  (-> {outgoing})")
    outside = [n for n in files if layer(n, files[n]) != "domain"]
    pairs = Counter((layer(a, files[a]), layer(b, files[b])) for a, b in walk.arrows)
    out.append(
        f"files {len(files)}, lines {sum(lines.values())}, largest {max(lines.values())}, arrows {len(walk.arrows)}"
    )
    out.append(f"outside the domain: files {len(outside)}, lines {sum(lines[n] for n in outside)}")
    out.append("arrows by layer: " + ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(pairs.items())))
    return out


def main() -> None:
    lines = []
    for title, entries in FLOWS.items():
        lines += [*report(title, entries), ""]
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
