"""`make checkov` fails when a check the template must pass breaks: the gate can fail.

checkov lives in its own environment (.venv-tools/checkov, `make checkov` builds it from
requirements/checkov.txt); `make aws-rules` runs this file after it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from postback_ops.template import REPO_ROOT, TEMPLATE_PATH

CHECKOV = REPO_ROOT / ".venv-tools" / "checkov" / "bin" / "checkov"


def _checkov(template: Path) -> tuple[int, dict[str, object]]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make checkov` first")
    done = subprocess.run(  # noqa: S603 - the pinned tool on a file this test wrote
        [str(CHECKOV), "--file", str(template), "--framework", "cloudformation", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_checkov_fails_when_a_skip_goes_and_names_the_check_and_resource(tmp_path: Path) -> None:
    # GIVEN template.yaml without the dispatcher's inline skip of CKV_AWS_117 (Lambda in a VPC)
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    dispatch = text.index("  DispatchFunction:\n")
    skip = re.compile(r"          - id: CKV_AWS_117\n            comment: [^\n]*\n")
    match = skip.search(text, dispatch)
    assert match is not None
    broken = tmp_path / "template.yaml"
    broken.write_text(text[: match.start()] + text[match.end() :], encoding="utf-8")
    # WHEN checkov scans it
    code, report = _checkov(broken)
    # THEN it fails on exactly that check of that resource
    assert code == 1
    failed = report["results"]["failed_checks"]  # type: ignore[index]
    assert [(f["check_id"], f["resource"]) for f in failed] == [
        ("CKV_AWS_117", "AWS::Serverless::Function.DispatchFunction")
    ]
