"""cfn-lint on the translated template: what CloudFormation itself will be handed.

`sam validate --lint` lints the SAM template; this lints its translation (roles, event
source mappings, permissions, the HTTP API's stage), where SAM's own output can break a rule.
Every error and warning fails, except the findings listed in ACCEPTED with the reason each
is not ours to fix.

`python -m postback_ops.awsrules.lint [TEMPLATE.json]` (default: translate template.yaml now).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.api import ManualArgs, lint

from postback_ops.awsrules.translate import VARIANTS, translate, write
from postback_ops.template import load_template, with_parameters


@dataclass(frozen=True)
class Accepted:
    rule_id: str
    message_contains: str
    reason: str


ACCEPTED = (
    # SAM's SQSPollerPolicy template lists these two batch names as actions. IAM has no such
    # actions (a batch is authorized as sqs:DeleteMessage / sqs:ChangeMessageVisibility, which
    # the same statement grants); the entries are inert, and SAM's templates are not ours to edit.
    Accepted("W3037", "'changemessagevisibilitybatch' is not one of", "SAM SQSPollerPolicy lists a non-IAM batch name"),
    Accepted("W3037", "'deletemessagebatch' is not one of", "SAM SQSPollerPolicy lists a non-IAM batch name"),
)


@dataclass(frozen=True)
class Finding:
    rule_id: str
    level: str
    message: str
    path: str

    def __str__(self) -> str:
        return f"{self.rule_id} [{self.level}] {self.message} (at {self.path})"


def findings(translated: Mapping[str, Any], *, regions: list[str] | None = None) -> tuple[list[Finding], list[Finding]]:
    """(failing, accepted) cfn-lint findings for a translated template."""
    # The region the stack deploys to (make exports AWS_DEFAULT_REGION): a resource type or
    # property some region lacks is found there.
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "eu-west-1"
    matches = lint(json.dumps(translated), config=ManualArgs(regions=regions or [region]))
    failing: list[Finding] = []
    accepted: list[Finding] = []
    for match in matches:
        level = match.rule.severity.lower()
        finding = Finding(match.rule.id, level, match.message, "/".join(str(p) for p in (match.path or [])))
        if level == "informational":
            continue
        known = any(a.rule_id == match.rule.id and a.message_contains in match.message for a in ACCEPTED)
        (accepted if known else failing).append(finding)
    return failing, accepted


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        variants = [("the given template", json.loads(Path(args[0]).read_text(encoding="utf-8")))]
    else:
        template = load_template()
        variants = []
        for values in VARIANTS:
            translated = translate(with_parameters(template, values))
            if not values:
                write(translated)
            label = " ".join(f"{k}={v}" for k, v in values.items()) or "the defaults"
            variants.append((label, translated))
    failed = False
    for label, translated in variants:
        failing, accepted = findings(translated)
        for finding in accepted:
            _say(f"accepted: {finding}")
        for finding in failing:
            _say(f"FAILED: {finding}")
        _say(f"cfn-lint on the translated template ({label}): {len(failing)} failing, {len(accepted)} accepted")
        failed = failed or bool(failing)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
