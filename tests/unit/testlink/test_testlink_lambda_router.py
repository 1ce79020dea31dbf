"""The Lambda router's naming and its patch of moto, installed and removed."""

from __future__ import annotations

import pytest
from moto.awslambda.models import LambdaBackend

from postback_ops.local.lambda_router import fake_function_arn, function_name_of, route_lambda_tasks


@pytest.mark.parametrize(
    ("name_or_arn", "expected"),
    [
        ("arn:aws:lambda:eu-west-1:123456789012:function:TestLinkFunction", "TestLinkFunction"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:TestLinkFunction:$LATEST", "TestLinkFunction"),
        ("TestLinkFunction", "TestLinkFunction"),
        ("TestLinkFunction:live", "TestLinkFunction"),
    ],
)
def test_a_function_is_routed_by_its_name(name_or_arn: str, expected: str) -> None:
    assert function_name_of(name_or_arn) == expected


def test_the_fake_arn_names_the_function() -> None:
    assert function_name_of(fake_function_arn("TestLinkFunction")) == "TestLinkFunction"


def test_moto_gets_its_own_invoke_back_after_the_block() -> None:
    # GIVEN moto's invoke
    original = LambdaBackend.invoke
    # WHEN routes are installed, then the block ends
    with route_lambda_tasks({"A": lambda event, context: event}):
        patched = LambdaBackend.invoke
        with route_lambda_tasks({"B": lambda event, context: event}):
            pass
        # THEN an inner block leaves the outer route in place, and the end restores moto
        assert LambdaBackend.invoke is patched
    assert patched is not original
    assert LambdaBackend.invoke is original
