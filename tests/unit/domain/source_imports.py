"""What a source file imports, read from its syntax tree (the domain purity and the import
direction tests)."""

import ast
from pathlib import Path

import postback_relay

PACKAGE = Path(postback_relay.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (relative imports resolved to the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                package = path.parent.relative_to(PACKAGE.parent).parts
                base = ".".join(package[: len(package) - node.level + 1])
                found.add(f"{base}.{node.module}")
            else:
                found.add(node.module)
            # `from postback_relay import services` imports a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.level == 0)
    return found
