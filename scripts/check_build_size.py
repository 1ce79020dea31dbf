"""After `sam build`: every function with its layers must stay under 30 MB unzipped.

Package size is cold-start time and money; this keeps an accidental dependency (botocore in
the layer, a test tool in a function) from shipping unnoticed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

LIMIT_MB = 30.0
BUILD = Path(".aws-sam/build")


class _AnyTagLoader(yaml.SafeLoader):
    pass


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> int:
    template = yaml.load((BUILD / "template.yaml").read_text(), Loader=_AnyTagLoader)  # noqa: S506 - SafeLoader subclass
    resources = template["Resources"]
    layers = {
        name: _size_mb(BUILD / name) for name, r in resources.items() if r["Type"] == "AWS::Serverless::LayerVersion"
    }
    failed = False
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        total = _size_mb(BUILD / name) + sum(layers.values())
        verdict = "ok" if total < LIMIT_MB else "TOO LARGE"
        print(f"{name}: {total:.1f} MB with its layers ({verdict}, limit {LIMIT_MB:.0f} MB)")  # noqa: T201
        failed = failed or total >= LIMIT_MB
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
