"""Which relay the config script talks to: a deployed stack by name, or the local stack.

A deployed stack is found through CloudFormation (its Outputs name the tables, queues and the
state machine). The local stack (`make run`) serves AWS from an in-process moto server and
publishes the same outputs as JSON in an SSM parameter of that server.

Tests point the script at moto with `pinned(Target.from_outputs(outputs))`.
"""

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    TokenRetrievalError,
)

LOCAL_ENDPOINT = "http://127.0.0.1:4566"
LOCAL_ENDPOINT_ENV = "POSTBACK_LOCAL_ENDPOINT"
# `make run` records where its stack is in <repo>/.local-stack/stack.json (git-ignored); the
# tests point this at a folder of their own so that they never touch a developer's record.
LOCAL_STATE_DIR_ENV = "POSTBACK_LOCAL_STATE_DIR"
LOCAL_STACK_FILE = "stack.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_REGION = "eu-west-1"
LOCAL_OUTPUTS_PARAMETER = "/postback-relay/local/outputs"
LOCAL_CALLER = "local"

# The error codes AWS answers when the credentials exist but are not (or no longer) valid.
_CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
    }
)


class TargetUnavailable(Exception):
    """The stack cannot be reached: unknown, not running, or no usable credentials.

    The message is one sentence for a person; the CLI prints it without a traceback.
    """


@dataclass(frozen=True)
class Target:
    """A resolved relay: its outputs and a boto3 session that reaches it."""

    name: str
    region: str
    outputs: Mapping[str, str]
    session: boto3.Session = field(repr=False)
    endpoint_url: str | None = None
    local: bool = False

    @classmethod
    def from_outputs(
        cls, outputs: Mapping[str, Any], *, local: bool = False, region: str = LOCAL_REGION, name: str = "test"
    ) -> "Target":
        """A target over an outputs dict, reached with the ambient credentials (moto in tests)."""
        return cls(
            name=name,
            region=region,
            outputs={key: str(value) for key, value in outputs.items()},
            session=boto3.Session(region_name=region),
            local=local,
        )

    @property
    def allow_loopback(self) -> bool:
        """Only the local stack may post back to this machine (contract section 3)."""
        return self.local

    @property
    def delay_scale(self) -> float:
        """How much the local stack shrinks every wait (1.0 for a deployed stack)."""
        raw = self.outputs.get("DelayScale")
        return float(raw) if raw else 1.0

    def output(self, key: str) -> str:
        try:
            return self.outputs[key]
        except KeyError:
            raise TargetUnavailable(f"The stack {self.name} has no output {key}; is it an older version?") from None

    def client(self, service_name: str) -> Any:
        return self.session.client(  # type: ignore[call-overload]
            service_name, endpoint_url=self.endpoint_url, config=_client_config(self.local)
        )

    def resource(self, service_name: str) -> Any:
        return self.session.resource(  # type: ignore[call-overload]
            service_name, endpoint_url=self.endpoint_url, config=_client_config(self.local)
        )

    def caller(self) -> str:
        """Who is making changes, for `updated_by`: the caller's ARN, or "local"."""
        if self.local:
            return LOCAL_CALLER
        with translate_errors(self):
            arn: str = self.client("sts").get_caller_identity()["Arn"]
        return arn


def _client_config(local: bool) -> Config:
    if local:
        # A local stack that is not running must be reported at once, not after retries.
        return Config(connect_timeout=2, read_timeout=30, retries={"max_attempts": 1, "mode": "standard"})
    return Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 5, "mode": "standard"})


_pinned: Target | None = None


@contextmanager
def pinned(target: Target) -> Iterator[Target]:
    """Make every resolution return `target` (tests drive the CLI against moto this way)."""
    global _pinned
    previous, _pinned = _pinned, target
    try:
        yield target
    finally:
        _pinned = previous


def resolve_target(*, local: bool, stack_name: str | None, region: str | None, profile: str | None) -> Target:
    """Find the relay the options name. Raises TargetUnavailable, or ValueError for bad options."""
    if _pinned is not None:
        return _pinned
    if local and stack_name:
        raise ValueError("Give either --local or --stack-name, not both.")
    if local:
        return _resolve_local(region)
    if not stack_name:
        raise ValueError("Say which relay to use: --stack-name NAME (or POSTBACK_STACK_NAME) or --local.")
    return _resolve_stack(stack_name, region, profile)


def local_state_dir() -> Path:
    """Where `make run` writes what it tells the developer (the stack record, the receiver's config)."""
    return Path(os.environ.get(LOCAL_STATE_DIR_ENV) or REPO_ROOT / ".local-stack")


def local_stack_file() -> Path:
    return local_state_dir() / LOCAL_STACK_FILE


def read_local_stack_record() -> dict[str, Any] | None:
    """What the running `make run` recorded: its endpoints and its token; None when none runs."""
    try:
        record = json.loads(local_stack_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("aws_endpoint") else None


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _resolve_local(region: str | None) -> Target:
    """The local stack: POSTBACK_LOCAL_ENDPOINT if set, else the endpoint `make run` recorded,
    else moto's default port; and only if what answers there is this project's local stack."""
    record = read_local_stack_record()
    explicit = os.environ.get(LOCAL_ENDPOINT_ENV)
    endpoint = explicit or (str(record["aws_endpoint"]) if record else LOCAL_ENDPOINT)
    recorded = _shown_path(local_stack_file())
    not_ours = (
        f"The server at {endpoint} is not this project's local stack; "
        f"`make run` prints its AWS endpoint and records it in {recorded}."
    )
    # moto accepts any credentials; fixed dummies keep a developer's real ones out of the way.
    session = boto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto's dummy credentials, not a secret
        region_name=region or LOCAL_REGION,
    )
    target = Target(
        name="local", region=region or LOCAL_REGION, outputs={}, session=session, endpoint_url=endpoint, local=True
    )
    try:
        answer = target.client("ssm").get_parameter(Name=LOCAL_OUTPUTS_PARAMETER)
        outputs = json.loads(answer["Parameter"]["Value"])
    except EndpointConnectionError as exc:
        if record and not explicit:
            raise TargetUnavailable(
                f"The local stack recorded in {recorded} is not running at {endpoint}; start it with `make run`."
            ) from exc
        raise TargetUnavailable(f"The local stack is not running at {endpoint}; start it with `make run`.") from exc
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise TargetUnavailable(
                f"The server at {endpoint} is not a running local stack (no {LOCAL_OUTPUTS_PARAMETER}); "
                "start it with `make run`."
            ) from exc
        raise TargetUnavailable(not_ours) from exc
    except (BotoCoreError, KeyError, TypeError, ValueError) as exc:
        # Another kind of server (the conversion API, the test receiver) answered something
        # that is not an SSM answer.
        raise TargetUnavailable(not_ours) from exc
    token = outputs.get("StackToken") if isinstance(outputs, dict) else None
    if not token:
        raise TargetUnavailable(not_ours)
    if record and str(record.get("aws_endpoint")) == endpoint and record.get("token") != token:
        raise TargetUnavailable(
            f"The server at {endpoint} is another local stack than the one recorded in {recorded}; "
            "stop it, or point POSTBACK_LOCAL_ENDPOINT at the one you mean."
        )
    return Target(
        name="local",
        region=target.region,
        outputs={key: str(value) for key, value in outputs.items()},
        session=session,
        endpoint_url=endpoint,
        local=True,
    )


def _resolve_stack(stack_name: str, region: str | None, profile: str | None) -> Target:
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as exc:
        raise TargetUnavailable(f"No AWS profile named {profile} in your AWS configuration.") from exc
    if not session.region_name:
        raise TargetUnavailable("No AWS region: pass --region or set AWS_REGION.")
    target = Target(name=stack_name, region=session.region_name, outputs={}, session=session)
    with translate_errors(target):
        try:
            answer = target.client("cloudformation").describe_stacks(StackName=stack_name)
        except ClientError as exc:
            # CloudFormation answers a generic ValidationError for a stack that does not exist.
            if exc.response.get("Error", {}).get("Code") == "ValidationError":
                raise TargetUnavailable(f"No stack named {stack_name} in region {target.region}.") from exc
            raise
    stacks = answer.get("Stacks", [])
    if not stacks:
        raise TargetUnavailable(f"No stack named {stack_name} in region {target.region}.")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputKey" in o}
    return Target(name=stack_name, region=target.region, outputs=outputs, session=session)


def _unreachable_endpoint(exc: BaseException, local: bool, endpoint_url: str | None) -> str:
    if local:
        return f"The local stack is not running at {endpoint_url}; start it with `make run`."
    return f"AWS cannot be reached: {exc}."


def _refused_credentials(exc: BaseException, local: bool, endpoint_url: str | None) -> str | None:
    error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
    if error.get("Code") in _CREDENTIAL_ERROR_CODES:
        return f"AWS refused the credentials: {error.get('Message') or error.get('Code')}."
    return None  # another refusal: not a reason AWS is unreachable


_Reason = Callable[[BaseException, bool, str | None], str | None]
# Why AWS could not be reached, by botocore's exception, in the order they are matched (the
# credential, region and endpoint errors are BotoCoreErrors too, so they come first).
_UNAVAILABLE_REASONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], _Reason], ...] = (
    (
        (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, TokenRetrievalError),
        lambda exc, local, endpoint_url: (
            "No usable AWS credentials: set a profile (--profile or AWS_PROFILE) or log in (aws sso login)."
        ),
    ),
    (NoRegionError, lambda exc, local, endpoint_url: "No AWS region: pass --region or set AWS_REGION."),
    (EndpointConnectionError, _unreachable_endpoint),
    (ClientError, _refused_credentials),
    (BotoCoreError, lambda exc, local, endpoint_url: f"AWS cannot be reached: {exc}."),
)


def unavailable_reason(exc: BaseException, *, local: bool = False, endpoint_url: str | None = None) -> str | None:
    """The sentence saying why AWS could not be reached, or None if `exc` is another kind of failure."""
    for kinds, reason in _UNAVAILABLE_REASONS:
        if isinstance(exc, kinds):
            return reason(exc, local, endpoint_url)
    return None


@contextmanager
def translate_errors(target: Target) -> Iterator[None]:
    """Turn botocore's reasons for not reaching the target into TargetUnavailable."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        reason = unavailable_reason(exc, local=target.local, endpoint_url=target.endpoint_url)
        if reason is None:
            raise
        raise TargetUnavailable(reason) from exc
