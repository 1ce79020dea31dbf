"""`make cfn-lint` fails on a broken translation: the gate can fail."""

from __future__ import annotations

import copy

from template_support import TEMPLATE

from postback_ops.awsrules.lint import findings
from postback_ops.awsrules.translate import translate


def test_cfn_lint_names_a_rule_the_translated_template_breaks() -> None:
    # GIVEN the translation of template.yaml with a timeout above Lambda's 900 s and an
    # event source batch larger than SQS allows
    translated = copy.deepcopy(translate(TEMPLATE, region="eu-west-1"))
    translated["Resources"]["DispatchFunction"]["Properties"]["Timeout"] = 901
    translated["Resources"]["DispatchFunctionPostbacks"]["Properties"]["BatchSize"] = 20_000
    # WHEN cfn-lint reads it
    failing, accepted = findings(translated)
    # THEN both are failing findings at their paths, and SAM's own batch names stay accepted
    paths = {finding.path for finding in failing}
    assert "Resources/DispatchFunction/Properties/Timeout" in paths
    assert "Resources/DispatchFunctionPostbacks/Properties/BatchSize" in paths
    assert all(finding.level == "error" for finding in failing)
    assert {finding.rule_id for finding in accepted} == {"W3037"}
