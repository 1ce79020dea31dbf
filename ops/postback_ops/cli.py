"""The `postback` config script: affiliates, previews, test runs and deliveries of one relay.

Exit codes: 0 ok, 1 failed (or a failed verdict), 2 usage or invalid input, 3 target unreachable
or credentials missing, 4 not found, 5 conflict.
"""

from typing import Annotated

import typer

from postback_ops.cli_affiliates import affiliate_app, export
from postback_ops.cli_context import Ops, PostbackGroup
from postback_ops.cli_deliveries import deliveries, endpoints, replay
from postback_ops.cli_health import health
from postback_ops.cli_outbox import outbox_app
from postback_ops.cli_portal import changes_app, history, portal_app
from postback_ops.cli_presets import presets
from postback_ops.cli_preview import preview
from postback_ops.cli_testruns import test_app

app = typer.Typer(
    cls=PostbackGroup,  # global options after the command too; usage errors as JSON under --json
    # Plain help: no `<bool>` beside every flag, and summaries kept to their first line.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    name="postback",
    help="Operate a postback relay: affiliate configs, previews, test links, deliveries.\n\n"
    "Exit codes: 0 ok, 1 failed, 2 invalid input, 3 unreachable or no credentials, 4 not found, 5 conflict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    local: Annotated[bool, typer.Option("--local", help="Use the local stack started by `make run`.")] = False,
    stack_name: Annotated[
        str | None,
        typer.Option("--stack-name", envvar="POSTBACK_STACK_NAME", help="The deployed stack (CloudFormation name)."),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="The stack's AWS region.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="The AWS profile to use.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")] = False,
) -> None:
    """Operate a postback relay: a deployed stack (--stack-name) or the local stack (--local)."""
    ctx.obj = Ops(local=local, stack_name=stack_name, region=region, profile=profile, json=json_output)


app.add_typer(affiliate_app, name="affiliate")
app.add_typer(test_app, name="test")
app.add_typer(outbox_app, name="outbox")
app.add_typer(portal_app, name="portal")
app.add_typer(changes_app, name="changes")
affiliate_app.command("history")(history)
app.command("preview")(preview)
app.command("presets")(presets)
app.command("deliveries")(deliveries)
app.command("replay")(replay)
app.command("health")(health)
app.command("endpoints")(endpoints)
app.command("export")(export)


def main() -> None:
    app()
