"""The static IAM pass (`make iam-static`): every AWS call site each function's code holds,
against its role in the translated template, whether or not a test takes the path."""

from __future__ import annotations

import copy
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from template_support import TEMPLATE

from postback_ops.awsrules import static_calls
from postback_ops.awsrules.calls import Authorization

REGION = "eu-west-1"
CONVERSIONS = "arn:aws:dynamodb:{region}:{account}:table/<<ConversionsTable>>"


@cache
def _report() -> static_calls.StaticReport:
    return static_calls.evaluate(TEMPLATE, region=REGION)


def _without_policy(function_id: str, policy: str, table: str) -> dict[str, Any]:
    """A copy of the template with one of the function's policy templates on `table` removed."""
    template = copy.deepcopy(TEMPLATE)
    policies = template["Resources"][function_id]["Properties"]["Policies"]
    kept = [p for p in policies if not (policy in p and p[policy].get("TableName") == {"Ref": table})]
    assert len(kept) == len(policies) - 1, f"{function_id} has no {policy} on {table}"
    template["Resources"][function_id]["Properties"]["Policies"] = kept
    return template


def test_every_call_site_of_every_function_is_allowed_by_its_role() -> None:
    # WHEN the pass reads the template's functions' code
    report = _report()
    # THEN it found call sites in each, and its role allows every one
    assert set(report.sites) == {
        "IngestFunction",
        "OutboxFunction",
        "DispatchFunction",
        "TestLinkFunction",
        "PortalFunction",
    }
    assert all(count > 0 for count in report.sites.values()), report.sites
    assert [str(d) for d in report.denied] == [] and report.unresolved == []
    # AND it follows wiring to the resource each adapter is given: ingest's repeat reads the
    # conversions table (a path no test of `make iam` took), the outbox sends to the postback queue
    assert Authorization("dynamodb:GetItem", CONVERSIONS) in report.checked["IngestFunction"]
    assert (
        Authorization("sqs:SendMessage", "arn:aws:sqs:{region}:{account}:<<PostbackQueue>>")
        in report.checked["OutboxFunction"]
    )
    # AND an adapter method the function never calls is not counted against its role
    # (the config script's PutItem on the affiliates table is not ingest's)
    assert not any(
        a.action == "dynamodb:PutItem" and "AffiliatesTable" in a.resource for a in report.checked["IngestFunction"]
    )


def test_removing_the_grant_for_ingests_repeat_read_fails_the_pass() -> None:
    # GIVEN the template without IngestFunction's read policy on the conversions table (as before
    # issue 24: DynamoDBWritePolicy grants no GetItem), a grant no test's recorded call needs
    template = _without_policy("IngestFunction", "DynamoDBReadPolicy", "ConversionsTable")

    # WHEN the pass runs
    report = static_calls.evaluate(template, region=REGION)

    # THEN it names the calls (the repeat's read and a reversal's read of its original), their
    # place in the code and the role
    denied = report.denied
    assert denied
    assert {(d.principal, d.authorization) for d in denied} == {
        ("IngestFunction", Authorization("dynamodb:GetItem", CONVERSIONS))
    }
    assert {d.site.path for d in denied} == {"layers/shared/postback_relay/adapters/dynamodb_conversions.py"}
    assert all("is not allowed by role IngestFunctionRole" in str(d) for d in denied)


def test_a_call_site_in_an_adapter_is_read_with_its_resource(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an adapter that pages a query (a paginator) and scans through a request dict
    (tmp_path / "store.py").write_text(
        textwrap.dedent(
            """
            class Store:
                def __init__(self, table: str, other: str, *, client: DynamoDBClient) -> None:
                    self._table, self._client = table_and_client(table, client)
                    self._other = other

                def newest(self):
                    return self._client.get_paginator("query").paginate(TableName=self._other)

                def everything(self):
                    request = {"TableName": self._table}
                    return items_of(self._client.scan, request)

                def not_aws(self):
                    return self._table.upper()
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr(static_calls, "REPO_ROOT", tmp_path)  # paths in the report relative to it

    # WHEN the pass reads it
    (store,) = static_calls.adapter_classes(tmp_path).values()

    # THEN both calls are found, each with the attribute naming its table, traced to its parameter
    assert store.service == "dynamodb"
    assert sorted((s.method, s.operation, s.resource_attr) for s in store.sites) == [
        ("everything", "Scan", "_table"),
        ("newest", "Query", "_other"),
    ]
    assert store.attr_param == {"_table": "table", "_other": "other"}
