"""template.yaml -> plain CloudFormation, offline, with the library `sam` itself uses.

`sam package` uploads every local code location and rewrites it to an S3 location; the SAM
transform (aws-sam-translator) then expands the serverless resources, their roles and their
policy templates. Both steps are done here without a network: code locations become
`s3://<bucket>/<key>` the way `sam package` writes them, and the transform gets a managed
policy map that needs no IAM call (SAM expands its policy templates itself; only a policy
named without its ARN would need the map, and this template names none).

`python -m postback_ops.awsrules.translate [OUT]` writes build/awsrules/template.json.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform

from postback_ops.template import REPO_ROOT, load_template

BUILD_DIR = REPO_ROOT / "build" / "awsrules"
TRANSLATED_PATH = BUILD_DIR / "template.json"
PACKAGE_BUCKET = "postback-relay-artifacts"

# Resource type -> the properties `sam package` uploads and rewrites to an S3 URI.
_CODE_LOCATIONS: dict[str, tuple[str, ...]] = {
    "AWS::Serverless::Function": ("CodeUri",),
    "AWS::Serverless::LayerVersion": ("ContentUri",),
    "AWS::Serverless::StateMachine": ("DefinitionUri",),
    "AWS::Serverless::Api": ("DefinitionUri",),
    "AWS::Serverless::HttpApi": ("DefinitionUri",),
    "AWS::Lambda::Function": ("Code",),
    "AWS::Lambda::LayerVersion": ("Content",),
}


class _StaticPolicyLoader:
    """The ManagedPolicyLoader interface without IAM: AWS managed policies by name -> ARN.

    SAM consults it only for a `Policies` entry that is a bare managed policy name; ARNs and
    policy templates never reach it.
    """

    def load(self) -> dict[str, str]:
        return {}


def _s3_uri(local_path: str) -> str:
    key = hashlib.md5(local_path.encode(), usedforsecurity=False).hexdigest()
    return f"s3://{PACKAGE_BUCKET}/{key}"


# Parameter values that change which resources the stack has (Conditions), each checked as its
# own deployment by the lint and the IAM check: cfn-lint reads parameter defaults (Rules,
# ranges) at the default only, and a role's grants may differ with them.
VARIANTS: tuple[dict[str, str], ...] = ({}, {"IngestFront": "FunctionUrl"})


def package(template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the template with every local code location rewritten as `sam package` does."""
    packaged = copy.deepcopy(dict(template))
    for resource in packaged.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        for key in _CODE_LOCATIONS.get(resource.get("Type", ""), ()):
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                props[key] = _s3_uri(value)
    return packaged


def translate(template: Mapping[str, Any] | None = None, *, region: str | None = None) -> dict[str, Any]:
    """The CloudFormation template the SAM transform produces for this (packaged) template."""
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if not region:
        raise SystemExit("translate: set AWS_DEFAULT_REGION (the SAM transform needs a region)")
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    packaged = package(template if template is not None else load_template())
    translated: dict[str, Any] = transform(packaged, {}, _StaticPolicyLoader())
    return translated


def write(translated: Mapping[str, Any], path: Path = TRANSLATED_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(translated, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else TRANSLATED_PATH
    translated = translate()
    write(translated, out)
    kinds: dict[str, int] = {}
    for resource in translated["Resources"].values():
        kinds[resource["Type"]] = kinds.get(resource["Type"], 0) + 1
    _say(f"translated template: {out} ({sum(kinds.values())} resources)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
