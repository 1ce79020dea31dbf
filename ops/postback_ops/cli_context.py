"""What every command of the config script shares: the target, its adapters, output and exit codes."""

import functools
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from typer._click.exceptions import ClickException, UsageError  # Typer's own copy of Click's
from typer.core import TyperGroup

from postback_ops import target as target_module
from postback_ops.ports import Backends, EndpointDirectory, TestRunner
from postback_ops.target import Target, TargetUnavailable, translate_errors, unavailable_reason
from postback_relay import wiring
from postback_relay.domain.errors import (
    ConfigError,
    ConflictError,
    DomainError,
    InfrastructureError,
    LinkError,
    NotFoundError,
    TrackerError,
    UnsafeUrlError,
)
from postback_relay.domain.fields import human_field
from postback_relay.domain.messages import sentence, validation_message
from postback_relay.ports import (
    AffiliateStore,
    ChangeLog,
    DeliveryLog,
    KeptPostbacks,
    PortalAccess,
    PostbackQueue,
    TestRunStore,
)


class ExitCode(IntEnum):
    """Exit codes scripts can rely on."""

    OK = 0
    FAILED = 1  # the command failed, or the test run's verdict is `failed`
    INVALID = 2  # usage error or invalid input (a refused config)
    UNREACHABLE = 3  # target unknown or unreachable, credentials missing
    NOT_FOUND = 4
    CONFLICT = 5  # someone else changed the affiliate since it was read


class UsageProblem(Exception):
    """Options that do not make sense together; exits 2 with the message."""


class StackBackends:
    """The real adapters over a resolved target (built by postback_relay.wiring on the target's
    clients), each on first use: a command needs one or two."""

    def __init__(self, target: Target) -> None:
        self.target = target

    @cached_property
    def affiliates(self) -> AffiliateStore:
        # Consistent reads: `put` compares against the version it read, just before its conditional write.
        return wiring.affiliate_store(
            self.target.output("AffiliatesTableName"),
            dynamodb=self.target.client("dynamodb"),
            allow_loopback=self.target.allow_loopback,
            consistent_read=True,
        )

    @cached_property
    def deliveries(self) -> DeliveryLog:
        return wiring.delivery_log(self.target.output("DeliveriesTableName"), dynamodb=self.target.client("dynamodb"))

    @cached_property
    def kept_postbacks(self) -> KeptPostbacks:
        return wiring.kept_postbacks(
            self.target.output("ConversionsTableName"), dynamodb=self.target.client("dynamodb")
        )

    @cached_property
    def run_records(self) -> TestRunStore:
        return wiring.run_records(self.target.output("TestRunsTableName"), dynamodb=self.target.client("dynamodb"))

    @cached_property
    def queue(self) -> PostbackQueue:
        return wiring.postback_queue(self.target.output("PostbackQueueUrl"), sqs=self.target.client("sqs"))

    @cached_property
    def test_runs(self) -> TestRunner:
        runner: TestRunner = wiring.run_starter(
            self.target.output("TestRunsTableName"),
            self.target.output("TestLinkStateMachineArn"),
            dynamodb=self.target.client("dynamodb"),
            sfn=self.target.client("stepfunctions"),
        )
        return runner

    @cached_property
    def endpoints(self) -> EndpointDirectory:
        directory: EndpointDirectory = wiring.endpoint_directory(
            self.target.output("EndpointsTableName"), dynamodb=self.target.client("dynamodb")
        )
        return directory

    @cached_property
    def _portal(self) -> tuple[PortalAccess, ChangeLog]:
        store = wiring.portal_store(self.target.output("PortalTableName"), dynamodb=self.target.client("dynamodb"))
        return store, store  # one table serves both

    @property
    def portal_access(self) -> PortalAccess:
        return self._portal[0]

    @property
    def changes(self) -> ChangeLog:
        return self._portal[1]

    def portal_secret(self) -> bytes:
        """The stack's portal secret (Secrets Manager), which signs the links `portal link` prints."""
        with translate_errors(self.target):
            answer = self.target.client("secretsmanager").get_secret_value(
                SecretId=self.target.output("PortalSecretArn")
            )
        return str(answer["SecretString"]).encode()

    def caller(self) -> str:
        caller: str = self.target.caller()
        return caller


def build_backends(target: Target) -> Backends:
    return StackBackends(target)


@dataclass
class Ops:
    """The global options of one invocation, and what they resolve to (lazily: `--help` needs no AWS)."""

    local: bool = False
    stack_name: str | None = None
    region: str | None = None
    profile: str | None = None
    json: bool = False
    _target: Target | None = field(default=None, repr=False)
    _backends: Backends | None = field(default=None, repr=False)

    @property
    def target(self) -> Target:
        if self._target is None:
            try:
                self._target = target_module.resolve_target(
                    local=self.local, stack_name=self.stack_name, region=self.region, profile=self.profile
                )
            except ValueError as exc:
                raise UsageProblem(str(exc)) from exc
        return self._target

    @property
    def backends(self) -> Backends:
        if self._backends is None:
            self._backends = build_backends(self.target)
        return self._backends

    def emit(self, data: object, show: Callable[[Console], None]) -> None:
        """JSON on stdout for scripts, or whatever `show` draws for people."""
        if self.json:
            sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
        else:
            show(people_console())

    def note(self, message: str) -> None:
        """A remark for people, kept off stdout so that `--json` output stays parseable."""
        if self.json:
            typer.echo(message, err=True)
        else:
            people_console().print(message, markup=False, highlight=False)


def people_console() -> Console:
    # Built per call: tests swap sys.stdout. Plain text is never wrapped (a diff, a URL must stay
    # copyable); piped output is given room so that tables keep whole URLs.
    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 240)
    return console


def people_table(*headers: str) -> Table:
    """A table whose cells fold rather than being cut with an ellipsis: nothing is hidden."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def ops_of(ctx: typer.Context) -> Ops:
    ops = ctx.find_object(Ops)
    if ops is None:  # a sub-app invoked on its own, in a test
        ops = Ops()
        ctx.obj = ops
    return ops


def _ops_among(values: Sequence[object]) -> Ops | None:
    for value in values:
        # Typer hands commands the context of its own click, which typer.Context is not a base of.
        find_object = getattr(value, "find_object", None)
        if callable(find_object):
            found = find_object(Ops)
            return found if isinstance(found, Ops) else None
    return None


_ERROR_KINDS = {
    ExitCode.FAILED: "failed",
    ExitCode.INVALID: "invalid_input",
    ExitCode.UNREACHABLE: "unreachable",
    ExitCode.NOT_FOUND: "not_found",
    ExitCode.CONFLICT: "conflict",
}


# The options of the command running now, for `fail` (set by handle_errors).
_running_ops: ContextVar[Ops | None] = ContextVar("running_ops", default=None)


def _json_wanted() -> bool:
    ops = _running_ops.get()
    return bool(ops and ops.json)


def fail(code: ExitCode, message: str, *, error: str | None = None, **details: object) -> typer.Exit:
    """Print one sentence on stderr and return the exit to raise.

    With --json the sentence goes to stderr as {"error": kind, "message": sentence, ...details},
    so that a script reads every failure the way it reads every answer."""
    if _json_wanted():
        document = {"error": error or _ERROR_KINDS.get(code, "failed"), "message": message, **details}
        typer.echo(json.dumps(document, ensure_ascii=False), err=True)
    else:
        typer.echo(message, err=True)
    return typer.Exit(int(code))


def config_errors(exc: ConfigError) -> list[tuple[str, str]]:
    return list(getattr(exc, "errors", None) or [(exc.field, exc.reason)])


def config_error_lines(exc: ConfigError) -> list[str]:
    return [f"{human_field(field_path)}: {reason}" for field_path, reason in config_errors(exc)]


def validation_error_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        where = human_field(".".join(str(p) for p in err["loc"])) or "(input)"
        lines.append(f"{where}: {validation_message(err['type'], err['msg'])}")
    return lines


def _aws_exit(exc: BaseException, ops: Ops | None) -> typer.Exit:
    """Exit 3 when AWS could not be reached or the credentials are missing, else exit 1."""
    target = ops._target if ops is not None else None
    local = target.local if target is not None else bool(ops and ops.local)
    endpoint = target.endpoint_url if target is not None else None
    for candidate in (exc, exc.__cause__):
        if candidate is not None:
            reason = unavailable_reason(candidate, local=local, endpoint_url=endpoint)
            if reason is not None:
                return fail(ExitCode.UNREACHABLE, reason)
    message = exc.message if isinstance(exc, DomainError) else f"AWS refused the request: {exc}"
    return fail(ExitCode.FAILED, message)


def _config_exit(exc: ConfigError, ops: Ops | None) -> typer.Exit:
    lines = config_error_lines(exc)
    errors = [{"field": f, "reason": r} for f, r in config_errors(exc)]
    message = "Config refused:\n  " + "\n  ".join(lines)
    return fail(ExitCode.INVALID, message, error=exc.kind, errors=errors)


def _validation_exit(exc: ValidationError, ops: Ops | None) -> typer.Exit:
    return fail(ExitCode.INVALID, "Invalid input:\n  " + "\n  ".join(validation_error_lines(exc)))


def _tracker_exit(exc: TrackerError, ops: Ops | None) -> typer.Exit:
    return fail(ExitCode.INVALID, f"The tracker does not fit ({exc.reason}): {exc.message}", error=exc.kind)


# Each expected failure -> its exit (and its one sentence), in the order they are matched: a
# subclass comes before its base (DomainError, which covers the rest, is last).
_EXITS: tuple[tuple[type[BaseException], Callable[[Any, Ops | None], typer.Exit]], ...] = (
    (UsageProblem, lambda exc, ops: fail(ExitCode.INVALID, str(exc), error="usage")),
    (TargetUnavailable, lambda exc, ops: fail(ExitCode.UNREACHABLE, str(exc))),
    (ConfigError, _config_exit),
    (ValidationError, _validation_exit),
    (TrackerError, _tracker_exit),
    (LinkError, lambda exc, ops: fail(ExitCode.INVALID, f"The link cannot be read: {exc.message}", error=exc.kind)),
    (UnsafeUrlError, lambda exc, ops: fail(ExitCode.INVALID, f"Unsafe URL: {exc.message}", error=exc.kind)),
    (NotFoundError, lambda exc, ops: fail(ExitCode.NOT_FOUND, exc.message)),
    (ConflictError, lambda exc, ops: fail(ExitCode.CONFLICT, exc.message)),
    (InfrastructureError, _aws_exit),
    (BotoCoreError, _aws_exit),
    (ClientError, _aws_exit),
    (DomainError, lambda exc, ops: fail(ExitCode.FAILED, exc.message, error=exc.kind)),
)
_EXPECTED = tuple(kind for kind, _ in _EXITS)


def _exit_for(exc: BaseException, ops: Ops | None) -> typer.Exit:
    """The exit an expected failure maps to (the first entry of _EXITS it is an instance of)."""
    return next(to_exit(exc, ops) for kind, to_exit in _EXITS if isinstance(exc, kind))


def handle_errors[**P, R](command: Callable[P, R]) -> Callable[P, R]:
    """Map every expected failure to its exit code and one sentence on stderr, never a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ops = _ops_among([*args, *kwargs.values()])
        running = _running_ops.set(ops)
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except _EXPECTED as exc:
            raise _exit_for(exc, ops) from None
        finally:
            _running_ops.reset(running)

    return run


# --- the root command: global options anywhere, usage errors as JSON under --json ------------

GLOBAL_FLAGS = frozenset({"--local", "--json"})
GLOBAL_VALUED = frozenset({"--stack-name", "--region", "--profile"})


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """The global options moved before the command, wherever they were written:
    `postback health --local` is `postback --local health`. Arguments after `--` stay."""
    hoisted: list[str] = []
    rest: list[str] = []
    items = iter(args)
    for arg in items:
        if arg == "--":
            rest.append(arg)
            rest.extend(items)
            break
        name = arg.split("=", 1)[0]
        if arg in GLOBAL_FLAGS or (name in GLOBAL_VALUED and "=" in arg):
            hoisted.append(arg)
        elif arg in GLOBAL_VALUED:
            hoisted.append(arg)
            hoisted.extend(itertools.islice(items, 1))
        else:
            rest.append(arg)
    return hoisted + rest


def usage_message(error: ClickException) -> str:
    """Click's complaint as our sentence, with where to look for the right usage."""
    text = sentence(error.format_message().replace("Value error, ", ""))
    ctx = getattr(error, "ctx", None)
    if isinstance(error, UsageError) and ctx is not None:
        text += f" See `{ctx.command_path} --help`."
    return text


class WholeSummaries(TyperGroup):
    """A command group whose `--help` lists each command with its whole first sentence, wrapped,
    never cut off with "..." mid-sentence."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class PostbackGroup(WholeSummaries):
    """The `postback` command: global options accepted after the command too, and every usage
    error (unknown option, missing argument, bad value) as one JSON document on stderr under
    --json, {"error": "usage", "message": ...}, as every other failure; exit 2."""

    def main(  # type: ignore[override]  # the same call; standalone mode handled here
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = hoist_global_options(sys.argv[1:] if args is None else list(args))
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(int(ExitCode.FAILED))
        except ClickException as error:
            if "--json" in argv:
                document = {"error": "usage", "message": usage_message(error)}
                typer.echo(json.dumps(document, ensure_ascii=False), err=True)
            else:
                typer.echo(usage_message(error), err=True)
            sys.exit(error.exit_code)
        sys.exit(code if isinstance(code, int) else int(ExitCode.OK))
