"""What tests/unit/template/test_template.py leaves open about least privilege and secrets:
it checks the functions' and the state machine's `Policies`; these check the rest of the
template, and that the deployed timeouts leave room for one batch of slow postbacks."""

from __future__ import annotations

import json
from typing import Any

from template_support import TEMPLATE, walk

from postback_ops.template import resources_of_type, template_value

RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = resources_of_type(TEMPLATE, "AWS::Serverless::Function")


def test_no_hand_written_iam_anywhere_in_the_template() -> None:
    # GIVEN every resource of the template
    # THEN none is a raw IAM role or policy, and no policy statement with a wildcard hides
    # anywhere (a queue policy, a key policy, a role inline in another resource)
    iam = [name for name, spec in RESOURCES.items() if str(spec.get("Type", "")).startswith("AWS::IAM::")]
    assert iam == []
    for node in walk(TEMPLATE):
        if isinstance(node, dict) and ("Action" in node or "Resource" in node) and "Effect" in node:
            assert "*" not in json.dumps(node.get("Action")), node
            assert "*" not in json.dumps(node.get("Resource")), node


def test_every_sam_policy_template_names_a_resource_of_this_stack() -> None:
    # GIVEN the SAM policy templates of every function and state machine
    holders = {**FUNCTIONS, **resources_of_type(TEMPLATE, "AWS::Serverless::StateMachine")}
    for name, holder in holders.items():
        for policy in holder["Properties"].get("Policies", []):
            ((template_name, args),) = policy.items()
            # THEN each argument points at a resource of this template, never a literal name
            # (a literal would grant access to whatever happens to carry that name)
            for value in args.values():
                assert isinstance(value, dict), f"{name}: {template_name} takes a literal {value!r}"
                ((intrinsic, target),) = value.items()
                assert intrinsic in ("Ref", "Fn::GetAtt"), f"{name}: {template_name} {value}"
                logical_id = target if isinstance(target, str) else target[0]
                assert str(logical_id).split(".")[0] in RESOURCES, f"{name}: {template_name} -> {logical_id}"


def test_no_function_gets_a_secret_value_in_its_environment() -> None:
    # GIVEN every function's environment (after Globals)
    for name, function in FUNCTIONS.items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        for variable, value in variables.items():
            # THEN the signing secret travels by name only, read at run time from Secrets Manager
            assert "resolve:secretsmanager" not in json.dumps(value), f"{name}: {variable}"
            if "SECRET" in variable:
                # (the signing secret for ingest, the portal's link secret for the portal)
                assert variable.endswith("_NAME") and isinstance(value, dict), f"{name}: {variable}"
                secret = TEMPLATE["Resources"].get(value.get("Ref", ""), {})
                assert secret.get("Type") == "AWS::SecretsManager::Secret", f"{name}: {variable}"
    # AND the event logging of Powertools (which would log bodies and signatures) is off
    for node in walk(TEMPLATE):
        if isinstance(node, dict) and "POWERTOOLS_LOGGER_LOG_EVENT" in node:
            assert str(node["POWERTOOLS_LOGGER_LOG_EVENT"]).lower() == "false"


def test_the_dispatcher_outlives_one_batch_of_postbacks_that_time_out() -> None:
    # GIVEN the dispatcher's timeouts and its Lambda timeout
    dispatch = FUNCTIONS["DispatchFunction"]["Properties"]
    variables = dispatch["Environment"]["Variables"]
    per_postback = float(variables["CONNECT_TIMEOUT_S"]) + float(variables["READ_TIMEOUT_S"])
    workers, batch = (
        int(template_value(TEMPLATE, variables["MAX_WORKERS"])),
        int(template_value(TEMPLATE, dispatch["Events"]["Postbacks"]["Properties"]["BatchSize"])),
    )
    rounds = -(-batch // workers)
    # THEN a batch whose every postback hangs until its timeouts still ends inside the function's
    # timeout, with room for its DynamoDB and SQS calls
    assert rounds * per_postback + 5 <= int(dispatch["Timeout"])
