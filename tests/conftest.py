"""Shared test set-up: a fake AWS account, the handlers' settings from template.yaml, and moto.

The environment is set at import, before any handler module is imported, because each
handler validates its settings at import (cold start) just as it does in Lambda.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import boto3
import botocore.loaders
import botocore.session
import moto.kms.models
import pytest
from moto import mock_aws

from postback_ops.awsrules import recorder
from postback_ops.local.moto_patches import patch_moto
from postback_ops.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalStack, create_resources, function_environment
from postback_ops.template import load_template, resources_of_type

STACK_NAME = "postback-relay-test"
SIGNING_SECRET = "local-dev-secret"
TEMPLATE = load_template()


def _expected_stack() -> LocalStack:
    """The names create_resources will give, known before moto starts."""
    stack = LocalStack(stack_name=STACK_NAME)
    for logical_id in resources_of_type(TEMPLATE, "AWS::DynamoDB::Table"):
        stack.refs[logical_id] = f"{STACK_NAME}-{logical_id}"
    for logical_id in resources_of_type(TEMPLATE, "AWS::SQS::Queue"):
        name = f"{STACK_NAME}-{logical_id}"
        stack.refs[logical_id] = f"https://sqs.{LOCAL_REGION}.amazonaws.com/{LOCAL_ACCOUNT}/{name}"
    for logical_id in resources_of_type(TEMPLATE, "AWS::SNS::Topic"):
        stack.refs[logical_id] = f"arn:aws:sns:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{STACK_NAME}-{logical_id}"
    for logical_id in resources_of_type(TEMPLATE, "AWS::SecretsManager::Secret"):
        stack.refs[logical_id] = f"{STACK_NAME}-{logical_id}"  # Secrets Manager takes a name or an ARN
    return stack


def _handler_environment() -> dict[str, str]:
    stack = _expected_stack()
    env: dict[str, str] = {}
    for logical_id in resources_of_type(TEMPLATE, "AWS::Serverless::Function"):
        env.update(function_environment(stack, logical_id, template=TEMPLATE))
    env.pop("POWERTOOLS_SERVICE_NAME", None)
    return env


os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "postback-relay-tests",
        **_handler_environment(),
        # The tests read the functions' per-conversion and per-postback lines (INFO); the
        # template's default LogLevel is WARNING, what a deployed stack pays for.
        "POWERTOOLS_LOG_LEVEL": "INFO",
        # Tests point postbacks at receivers on 127.0.0.1, as the local stack does; the SSRF
        # tests exercise allow_loopback=False directly on the domain and the sender.
        "ALLOW_LOOPBACK": "true",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


# Speed, not behaviour: two costs every `aws` fixture paid again for nothing. Each new boto3
# session read and parsed the services' JSON models from disk anew (a third of the fixture's
# time): sessions of this process now share one botocore loader, whose cache is only ever read
# after the first load. moto drew a fresh 2048-bit RSA key for the KMS key behind every
# SSE-enabled table (a quarter of it); no test signs with KMS, so each key spec draws it once.
_shared_loaders: dict[str | None, botocore.loaders.Loader] = {}
_create_loader = botocore.loaders.create_loader


def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    if search_path_string not in _shared_loaders:
        _shared_loaders[search_path_string] = _create_loader(search_path_string)
    return _shared_loaders[search_path_string]


botocore.session.create_loader = _shared_loader
moto.kms.models.generate_private_key = functools.cache(moto.kms.models.generate_private_key)  # type: ignore[attr-defined]
# Behaviour: moto numbers stream records, and takes SQS messages, without a lock, while ingest
# writes from several threads and the local pollers receive from several: two records could
# share a sequence number (a stream reader looped on it), two pollers take one message
# (postback_ops.local.moto_patches). The local stack applies the same patches.
patch_moto()

# `make integration|reliability|e2e` set POSTBACK_AWS_CALL_LOG: every AWS call a function, the
# state machine or the CLI makes is recorded for `make iam`, here and in the subprocesses the
# tests start (the local stack, the `postback` script), through a sitecustomize on PYTHONPATH.
if os.environ.get(recorder.ENV_VAR):
    recorder.install(os.environ[recorder.ENV_VAR])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(recorder.SITE_DIR), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    )


@pytest.fixture
def aws() -> Iterator[dict[str, str]]:
    """GIVEN a fresh moto account with every table, queue and secret of template.yaml.

    Yields the stack outputs (AffiliatesTableName, PostbackQueueUrl, ...). Step Functions
    executions run their real definitions (Lambda tasks must be routed in-process).
    """
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        stack = create_resources(
            boto3.Session(region_name=LOCAL_REGION),
            stack_name=STACK_NAME,
            signing_secret=SIGNING_SECRET,
            template=TEMPLATE,
        )
        expected = _expected_stack()
        for logical_id, ref in expected.refs.items():
            if logical_id in resources_of_type(TEMPLATE, "AWS::SecretsManager::Secret"):
                continue
            assert stack.refs[logical_id] == ref, f"{logical_id}: the env set at import does not match moto's name"
        yield stack.outputs
