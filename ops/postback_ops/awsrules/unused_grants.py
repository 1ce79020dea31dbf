"""Grants no recorded call uses, allowed on purpose, each with its reason.

`make iam` fails on a granted action no call of the suites used (the role must allow what its
code does and nothing more), unless it is listed here. SAM policy templates come as a whole
(the template keeps to them: no hand-written IAM), and most bring actions beside the ones the
code calls; each such action needs its reason, as does a grant the code needs but no test
exercises.

To extend: add one `Unused(principal, resource, actions, reason)` to ALLOWED (a template's
extras through `template_extras`, whose reasons are per action in TEMPLATE_EXTRAS). The check's
failure prints the exact line to add for each unexplained grant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    """One action a role allows on one resource (`ConversionsTable`, `AffiliatesTable/index/*`,
    a canonical ARN for what is not the stack's), and the policy that brings it (the SAM policy
    template's name, `README` for the operator policy)."""

    principal: str
    resource: str
    action: str
    policy: str

    def __str__(self) -> str:
        return f"{self.principal}: {self.action} on {self.resource} (from {self.policy})"


@dataclass(frozen=True)
class Unused:
    """Grants of one principal on one resource that may stay unused, and why."""

    principal: str
    resource: str
    actions: tuple[str, ...]
    reason: str

    def covers(self, grant: Grant) -> bool:
        return (grant.principal, grant.resource) == (self.principal, self.resource) and grant.action in self.actions


_READ_SAME_ITEMS = "reads the very items the function reads by key already, so it reaches no data it could not"
_CRUD_NOT_WRITE = (
    "DynamoDBWritePolicy would not bring it, but then DynamoDBReadPolicy is needed beside it; "
    "this table is the function's own working state, which it writes anyway"
)

# Why an action a SAM policy template brings may stay unused, per (template, action). SAM has
# no narrower template; the template keeps to SAM's (no hand-written IAM: see the reliability
# suite's template test), so these ride along with the actions the code calls.
TEMPLATE_EXTRAS: dict[tuple[str, str], str] = {
    ("DynamoDBReadPolicy", "dynamodb:Scan"): f"a whole-table read; it {_READ_SAME_ITEMS}",
    ("DynamoDBReadPolicy", "dynamodb:Query"): f"a read by partition; it {_READ_SAME_ITEMS}",
    ("DynamoDBReadPolicy", "dynamodb:BatchGetItem"): f"GetItem for several keys at once; it {_READ_SAME_ITEMS}",
    ("DynamoDBReadPolicy", "dynamodb:DescribeTable"): "the table's metadata (key schema, size), no item",
    ("DynamoDBWritePolicy", "dynamodb:UpdateItem"): "changes items of the table the function puts anyway",
    ("DynamoDBWritePolicy", "dynamodb:BatchWriteItem"): (
        "puts or deletes several items at once; puts are what the function does one by one"
    ),
    ("DynamoDBCrudPolicy", "dynamodb:Scan"): f"a whole-table read; it {_READ_SAME_ITEMS}",
    ("DynamoDBCrudPolicy", "dynamodb:Query"): f"a read by partition; it {_READ_SAME_ITEMS}",
    ("DynamoDBCrudPolicy", "dynamodb:BatchGetItem"): f"GetItem for several keys at once; it {_READ_SAME_ITEMS}",
    ("DynamoDBCrudPolicy", "dynamodb:DescribeTable"): "the table's metadata (key schema, size), no item",
    (
        "DynamoDBCrudPolicy",
        "dynamodb:ConditionCheckItem",
    ): "a condition inside a transaction; reads no more than GetItem",
    ("DynamoDBCrudPolicy", "dynamodb:DeleteItem"): f"no code deletes; {_CRUD_NOT_WRITE}",
    ("DynamoDBCrudPolicy", "dynamodb:BatchWriteItem"): f"several puts or deletes at once; {_CRUD_NOT_WRITE}",
    ("DynamoDBCrudPolicy", "dynamodb:PutItem"): f"a whole-item write where the code updates; {_CRUD_NOT_WRITE}",
    ("DynamoDBCrudPolicy", "dynamodb:UpdateItem"): f"an in-place change where the code puts; {_CRUD_NOT_WRITE}",
    ("DynamoDBCrudPolicy", "dynamodb:GetItem"): f"a read of the function's own working state; {_CRUD_NOT_WRITE}",
    ("SQSPollerPolicy", "sqs:ChangeMessageVisibilityBatch"): (
        "the batch form of ChangeMessageVisibility, which the dispatcher calls (a wait's fallback)"
    ),
    ("SQSPollerPolicy", "sqs:DeleteMessageBatch"): (
        "the batch form of DeleteMessage, which Lambda's event source mapping calls as this role"
    ),
}


def template_extras(principal: str, resource: str, template: str, actions: Iterable[str]) -> tuple[Unused, ...]:
    """One entry per action, each with its reason from TEMPLATE_EXTRAS (KeyError: give one)."""
    return tuple(
        Unused(principal, resource, (action,), f"{template} brings it: {TEMPLATE_EXTRAS[template, action]}")
        for action in actions
    )


_READ = ("dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:Query", "dynamodb:Scan")
_CRUD = (*_READ, "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem")
_POLLER = ("sqs:ChangeMessageVisibilityBatch", "sqs:DeleteMessageBatch")

ALLOWED: tuple[Unused, ...] = (
    # The ingest function: GetItem of an affiliate's config and PutItem of a conversion are its calls.
    *template_extras("IngestFunction", "AffiliatesTable", "DynamoDBReadPolicy", _READ),
    *template_extras("IngestFunction", "ConversionsTable", "DynamoDBReadPolicy", _READ),
    *template_extras(
        "IngestFunction", "ConversionsTable", "DynamoDBWritePolicy", ("dynamodb:UpdateItem", "dynamodb:BatchWriteItem")
    ),
    # The dispatch function (GetItem of an affiliate's config, to sign, is recorded).
    *template_extras("DispatchFunction", "AffiliatesTable", "DynamoDBReadPolicy", _READ),
    *template_extras("DispatchFunction", "DeliveriesTable", "DynamoDBCrudPolicy", (*_CRUD, "dynamodb:PutItem")),
    *template_extras("DispatchFunction", "EndpointsTable", "DynamoDBCrudPolicy", (*_CRUD, "dynamodb:UpdateItem")),
    *template_extras("DispatchFunction", "PostbackQueue", "SQSPollerPolicy", _POLLER),
    # The test-link function (the CLI creates a run; the function reads and updates it).
    *template_extras("TestLinkFunction", "AffiliatesTable", "DynamoDBReadPolicy", _READ),
    *template_extras("TestLinkFunction", "DeliveriesTable", "DynamoDBReadPolicy", _READ),
    *template_extras(
        "TestLinkFunction", "TestRunsTable", "DynamoDBCrudPolicy", (*_CRUD, "dynamodb:GetItem", "dynamodb:PutItem")
    ),
    # The portal function. Its recorded calls come from the browser and e2e suites, which save in
    # `self_service: approve` (the CLI applies the approval) and start tests the CLI way.
    Unused(
        "PortalFunction",
        "AffiliatesTable",
        ("dynamodb:PutItem", "dynamodb:UpdateItem"),
        "an affiliate in `self_service: direct` saves its config at once (services/changes through the "
        "affiliate store's put/update); the browser tests save in `approve`, where the CLI applies it",
    ),
    *template_extras("PortalFunction", "AffiliatesTable", "DynamoDBCrudPolicy", _CRUD),
    *template_extras(
        "PortalFunction",
        "DeliveriesTable",
        "DynamoDBCrudPolicy",
        tuple(action for action in (*_CRUD, "dynamodb:PutItem") if action != "dynamodb:Query"),
    ),
    *template_extras("PortalFunction", "EndpointsTable", "DynamoDBReadPolicy", _READ),
    *template_extras("PortalFunction", "TestRunsTable", "DynamoDBCrudPolicy", (*_CRUD, "dynamodb:UpdateItem")),
    *template_extras(
        "PortalFunction",
        "PortalTable",
        "DynamoDBCrudPolicy",
        tuple(action for action in (*_CRUD, "dynamodb:UpdateItem") if action != "dynamodb:Query"),
    ),
    # The operator policy the README states (`postback` on AWS).
    Unused(
        "postback CLI",
        "ConversionsTable",
        ("dynamodb:Scan",),
        "`postback outbox recover` finds a batch's conversions in the table once the stream has trimmed "
        "them (README); its test drives the recovery itself, not through the command",
    ),
    Unused(
        "postback CLI",
        "OutboxParkedQueue",
        ("sqs:SendMessage",),
        "`postback outbox recover` parks a conversion whose postbacks cannot be read, as the outbox function "
        "does; the recorded command tests (recover, parked --requeue) meet no such conversion",
    ),
)


def reason_for(grant: Grant, allowed: Iterable[Unused] = ALLOWED) -> str | None:
    return next((entry.reason for entry in allowed if entry.covers(grant)), None)


def explained(grants: Iterable[Grant], allowed: Iterable[Unused] = ALLOWED) -> list[Grant]:
    entries = list(allowed)
    return [grant for grant in grants if reason_for(grant, entries) is not None]


def unexplained(grants: Iterable[Grant], allowed: Iterable[Unused] = ALLOWED) -> list[Grant]:
    entries = list(allowed)
    return [grant for grant in grants if reason_for(grant, entries) is None]


def stale(grants: Iterable[Grant], allowed: Iterable[Unused] = ALLOWED) -> list[str]:
    """Allowed (principal, resource, action) that are not unused grants: a test uses them now,
    or the role lost them. Listed for removal; harmless meanwhile."""
    unused = {(g.principal, g.resource, g.action) for g in grants}
    return [
        f"{entry.principal}: {action} on {entry.resource}"
        for entry in allowed
        for action in entry.actions
        if (entry.principal, entry.resource, action) not in unused
    ]


def failures(grants: Iterable[Grant]) -> list[str]:
    """What `make iam` prints for each unexplained unused grant: the grant, and what to do."""
    lines: list[str] = []
    for grant in grants:
        lines.append(
            f"UNUSED: {grant} is granted and no recorded call uses it. Make a test exercise the call, drop "
            f"the grant, or allow it in ops/postback_ops/awsrules/unused_grants.py, ALLOWED: "
            f'Unused("{grant.principal}", "{grant.resource}", ("{grant.action}",), "<why it must stay>"),'
        )
    return lines
