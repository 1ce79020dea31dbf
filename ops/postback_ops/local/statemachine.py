"""Create the test-link state machine on moto from statemachine/testlink.asl.json.

The definition is the one SAM deploys; only its DefinitionSubstitutions are filled here, with
the ARN of a function routed in-process (see lambda_router).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3

from postback_ops.local.lambda_router import enable_state_machine_execution, fake_function_arn

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.client import SFNClient

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFINITION_PATH = REPO_ROOT / "statemachine" / "testlink.asl.json"
TEST_LINK_FUNCTION_NAME = "TestLinkFunction"
LOCAL_ROLE_ARN = "arn:aws:iam::123456789012:role/postback-relay-local-testlink"


def substituted_definition(
    function_arn: str, *, path: Path = DEFINITION_PATH, substitutions: Mapping[str, str] | None = None
) -> str:
    """The definition with its `${...}` substitutions filled, as CloudFormation does."""
    definition = path.read_text(encoding="utf-8")
    for key, value in (substitutions or {"TestLinkFunctionArn": function_arn}).items():
        definition = definition.replace(f"${{{key}}}", value)
    return definition


def create_test_link_state_machine(
    sfn_client: SFNClient,
    role_arn: str = LOCAL_ROLE_ARN,
    function_arn: str | None = None,
    *,
    name: str = "postback-relay-test-TestLinkStateMachine",
) -> str:
    """Create the STANDARD state machine and return its ARN."""
    definition = substituted_definition(function_arn or fake_function_arn(TEST_LINK_FUNCTION_NAME))
    answer = sfn_client.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD")
    return answer["stateMachineArn"]


def create_state_machine(
    session: boto3.Session,
    *,
    template: Mapping[str, Any],
    stack: Any,
    function_arns: Mapping[str, str],
    logical_id: str = "TestLinkStateMachine",
    moto_port: int | None = None,
) -> str:
    """The local stack's entry: the template's state machine on the in-process moto server.

    Its DefinitionUri and DefinitionSubstitutions come from the template; a substitution that
    is `!GetAtt <Function>.Arn` takes that function's routed ARN from `function_arns`. The
    moto server's port is read from AWS_ENDPOINT_URL unless given.
    """
    props = template["Resources"][logical_id]["Properties"]
    substitutions: dict[str, str] = {}
    for key, value in props.get("DefinitionSubstitutions", {}).items():
        get_att = value.get("Fn::GetAtt") if isinstance(value, Mapping) else None
        if get_att and get_att[0] in function_arns:
            substitutions[key] = function_arns[get_att[0]]
        else:
            substitutions[key] = str(value)
    port = moto_port or urlsplit(os.environ.get("AWS_ENDPOINT_URL", "")).port
    if port is not None:
        enable_state_machine_execution(port)
    definition = substituted_definition("", path=REPO_ROOT / props["DefinitionUri"], substitutions=substitutions)
    stack_name = str(getattr(stack, "stack_name", "postback-relay-local"))
    answer = session.client("stepfunctions").create_state_machine(
        name=f"{stack_name}-{logical_id}", definition=definition, roleArn=LOCAL_ROLE_ARN, type="STANDARD"
    )
    return answer["stateMachineArn"]
