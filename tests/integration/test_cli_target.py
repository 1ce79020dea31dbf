"""Which relay the script reaches: a deployed stack through CloudFormation, the local stack
through its moto server, and one clear sentence (exit 3) when neither can be reached."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from postback_ops.cli import app
from postback_ops.local.receiver import Receiver
from postback_ops.local.resources import create_resources
from postback_ops.target import LOCAL_OUTPUTS_PARAMETER, resolve_target

LOOPBACK_ACME = """\
affiliate_id: "1234567"
name: Acme Media
postbacks:
  - events: [sale]
    url: "http://127.0.0.1:9000/postback?cid={clickid}"
"""


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No developer's .local-stack/ record is read: each test has its own (empty) folder."""
    folder = tmp_path / "local-stack"
    monkeypatch.setenv("POSTBACK_LOCAL_STATE_DIR", str(folder))
    return folder


def _stack_template(outputs: dict[str, str]) -> str:
    return json.dumps(
        {
            "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
    )


def test_a_deployed_stack_is_found_by_name(aws: dict[str, str], tmp_path: Path) -> None:
    # GIVEN a CloudFormation stack whose outputs name the tables
    boto3.client("cloudformation").create_stack(StackName="relay", TemplateBody=_stack_template(aws))
    # WHEN ops put and list affiliates through --stack-name
    runner = CliRunner()
    path = tmp_path / "acme.yaml"
    path.write_text(LOOPBACK_ACME.replace("http://127.0.0.1:9000", "https://track.acme.example"))
    put = runner.invoke(app, ["--stack-name", "relay", "--region", "eu-west-1", "affiliate", "put", str(path)])
    listed = runner.invoke(app, ["--stack-name", "relay", "--json", "affiliate", "list"])
    # THEN the stack's table holds the affiliate
    assert put.exit_code == 0, put.stderr
    assert [a["affiliate_id"] for a in json.loads(listed.stdout)] == ["1234567"]


def test_a_deployed_stack_never_accepts_loopback_postbacks(aws: dict[str, str], tmp_path: Path) -> None:
    boto3.client("cloudformation").create_stack(StackName="relay", TemplateBody=_stack_template(aws))
    path = tmp_path / "acme.yaml"
    path.write_text(LOOPBACK_ACME)
    result = CliRunner().invoke(app, ["--stack-name", "relay", "affiliate", "put", str(path)])
    assert result.exit_code == 2
    assert "postback 1, url" in result.stderr


@pytest.mark.usefixtures("aws")
def test_an_unknown_stack_exits_3_in_one_sentence() -> None:
    # WHEN ops name a stack that does not exist
    result = CliRunner().invoke(app, ["--stack-name", "nope", "affiliate", "list"])
    # THEN one sentence on stderr, exit 3, no traceback
    assert result.exit_code == 3
    assert result.stderr == "No stack named nope in region eu-west-1.\n"
    assert result.stdout == ""


def test_missing_credentials_exit_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN no credentials anywhere (and no instance metadata to ask)
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SECURITY_TOKEN",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # WHEN ops use a deployed stack
    result = CliRunner().invoke(app, ["--stack-name", "relay", "affiliate", "list"])
    # THEN one sentence, exit 3
    assert result.exit_code == 3
    assert result.stderr.startswith("No usable AWS credentials")
    assert result.stderr.count("\n") == 1


def test_an_unknown_profile_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = CliRunner().invoke(app, ["--stack-name", "relay", "--profile", "ghost", "affiliate", "list"])
    assert result.exit_code == 3
    assert result.stderr == "No AWS profile named ghost in your AWS configuration.\n"


@pytest.mark.parametrize("args", [["affiliate", "list"], ["--local", "--stack-name", "relay", "affiliate", "list"]])
def test_the_target_must_be_named_once(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTBACK_STACK_NAME", raising=False)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--stack-name" in result.stderr


def test_help_needs_no_aws() -> None:
    result = CliRunner().invoke(app, ["affiliate", "put", "--help"])
    assert result.exit_code == 0
    assert "--dry-run" in result.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_local_stack_that_is_not_running_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN nothing listening where the local stack should be
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("POSTBACK_LOCAL_ENDPOINT", endpoint)
    # WHEN a developer uses --local
    result = CliRunner().invoke(app, ["--local", "affiliate", "list"])
    # THEN one sentence says so, exit 3
    assert result.exit_code == 3
    assert result.stderr == f"The local stack is not running at {endpoint}; start it with `make run`.\n"


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """GIVEN a moto server on a free loopback port, as the local stack runs one."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("POSTBACK_LOCAL_ENDPOINT", endpoint)
    # A moto server keeps moto's process-wide state: start and leave with none.
    requests.post(f"{endpoint}/moto-api/reset", timeout=5).raise_for_status()
    try:
        yield endpoint
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=5).raise_for_status()
        server.stop()


def test_the_local_stack_is_found_through_its_outputs_parameter(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN the local stack's resources and its outputs published in SSM on that server
    with monkeypatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", moto_server)
        stack = create_resources(boto3.Session(region_name="eu-west-1"), stack_name="cli-local")
        boto3.client("ssm").put_parameter(
            Name=LOCAL_OUTPUTS_PARAMETER,
            Value=json.dumps({**stack.outputs, "DelayScale": 0.001, "StackToken": "t0ken"}),
            Type="String",
        )
    path = tmp_path / "acme.yaml"
    path.write_text(LOOPBACK_ACME)
    runner = CliRunner()
    # WHEN a developer puts a loopback postback with --local
    put = runner.invoke(app, ["--local", "affiliate", "put", str(path)])
    got = runner.invoke(app, ["--local", "--json", "affiliate", "get", "1234567"])
    # THEN it is stored in the local stack's table, by "local"
    assert put.exit_code == 0, put.stderr
    assert json.loads(got.stdout)["updated_by"] == "local"


def test_a_server_without_the_outputs_parameter_is_not_a_local_stack(moto_server: str) -> None:
    result = CliRunner().invoke(app, ["--local", "affiliate", "list"])
    assert result.exit_code == 3
    assert "is not a running local stack" in result.stderr


def _publish(endpoint: str, outputs: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("ssm").put_parameter(Name=LOCAL_OUTPUTS_PARAMETER, Value=json.dumps(outputs), Type="String")


def test_the_stack_recorded_by_make_run_is_found_without_an_endpoint(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    # GIVEN a local stack on a port that is not 4566, recorded by `make run` with its token
    _publish(moto_server, {"AffiliatesTableName": "none", "StackToken": "t0ken"}, monkeypatch)
    state_dir.mkdir()
    (state_dir / "stack.json").write_text(json.dumps({"aws_endpoint": moto_server, "token": "t0ken"}))
    monkeypatch.delenv("POSTBACK_LOCAL_ENDPOINT")
    # WHEN a developer resolves --local
    target = resolve_target(local=True, stack_name=None, region=None, profile=None)
    # THEN it is that stack
    assert (target.endpoint_url, target.outputs["StackToken"]) == (moto_server, "t0ken")


def test_another_stack_answering_at_the_recorded_endpoint_exits_3(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    # GIVEN a record whose token is not the one the server at its endpoint publishes
    _publish(moto_server, {"StackToken": "another"}, monkeypatch)
    state_dir.mkdir()
    (state_dir / "stack.json").write_text(json.dumps({"aws_endpoint": moto_server, "token": "t0ken"}))
    monkeypatch.delenv("POSTBACK_LOCAL_ENDPOINT")
    # WHEN a developer uses --local
    result = CliRunner().invoke(app, ["--local", "affiliate", "list"])
    # THEN one sentence says so, exit 3
    assert result.exit_code == 3
    assert "is another local stack than the one recorded in" in result.stderr


def test_a_recorded_stack_that_stopped_exits_3(monkeypatch: pytest.MonkeyPatch, state_dir: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    state_dir.mkdir()
    (state_dir / "stack.json").write_text(json.dumps({"aws_endpoint": endpoint, "token": "t0ken"}))
    monkeypatch.delenv("POSTBACK_LOCAL_ENDPOINT", raising=False)
    result = CliRunner().invoke(app, ["--local", "affiliate", "list"])
    assert result.exit_code == 3
    assert f"is not running at {endpoint}; start it with `make run`." in result.stderr


def test_a_moto_server_without_a_stack_token_is_not_this_projects_stack(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(moto_server, {"AffiliatesTableName": "none"}, monkeypatch)
    result = CliRunner().invoke(app, ["--local", "affiliate", "list"])
    assert result.exit_code == 3
    assert result.stderr.startswith(f"The server at {moto_server} is not this project's local stack;")


@pytest.mark.parametrize("status", [200, 404])
def test_a_server_that_is_not_moto_exits_3_in_one_sentence(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    # GIVEN POSTBACK_LOCAL_ENDPOINT pointed at an HTTP server that is not AWS (a receiver, an API)
    with Receiver() as server:
        server.respond("/", [status])
        monkeypatch.setenv("POSTBACK_LOCAL_ENDPOINT", server.url)
        # WHEN a developer uses --local
        result = CliRunner().invoke(app, ["--local", "affiliate", "list"])
    # THEN one sentence, exit 3, no traceback
    assert result.exit_code == 3, result.stderr
    assert result.stderr == (
        f"The server at {server.url} is not this project's local stack; "
        "`make run` prints its AWS endpoint and records it in "
        f"{os.environ['POSTBACK_LOCAL_STATE_DIR']}/stack.json.\n"
    )
