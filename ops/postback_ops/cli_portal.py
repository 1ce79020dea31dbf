"""`postback portal link|revoke`, `postback changes list|approve|reject` and `postback affiliate
history`: the affiliates' portal as ops run it (contract sections 6 and 7)."""

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from postback_ops.cli_affiliates import require_affiliate
from postback_ops.cli_context import UsageProblem, handle_errors, ops_of, people_table
from postback_relay.domain.changes import ChangeState
from postback_relay.domain.errors import DurationError
from postback_relay.domain.portal import DEFAULT_LINK_LIFETIME, link_lifetime, link_url, new_link, sign_pass
from postback_relay.services.changes import approve_change, reject_change

portal_app = typer.Typer(
    rich_markup_mode=None,
    help="The affiliates' portal: make a link to an affiliate's page, or end every link and session.",
    no_args_is_help=True,
)
changes_app = typer.Typer(
    rich_markup_mode=None,
    help="Changes affiliates made in the portal, waiting for ops: list, approve, reject.",
    no_args_is_help=True,
)


@portal_app.command("link")
@handle_errors
def link(
    ctx: typer.Context,
    affiliate_id: Annotated[str, typer.Argument(help="The affiliate whose portal the link opens.")],
    expires: Annotated[
        str, typer.Option("--expires", help="How long the link can be entered: 90m, 12h, 7d (at most 30d).")
    ] = DEFAULT_LINK_LIFETIME,
) -> None:
    """Print a link to the affiliate's own portal page. It opens once (entering starts a session)."""
    ops = ops_of(ctx)
    try:
        lifetime = link_lifetime(expires)
    except DurationError as exc:
        raise UsageProblem(f"--expires: {exc}") from None
    require_affiliate(ops, affiliate_id)
    backends = ops.backends
    portal_link = new_link(
        affiliate_id, epoch=backends.portal_access.epoch(affiliate_id), lifetime=lifetime, now=time.time()
    )
    url = link_url(ops.target.output("ApiUrl"), sign_pass(portal_link, backends.portal_secret()))
    expires_at = datetime.fromtimestamp(portal_link.expires_at, UTC).isoformat(timespec="seconds")
    data = {"affiliate_id": affiliate_id, "url": url, "expires_at": expires_at}

    def show(console: Console) -> None:
        console.print(url, markup=False, soft_wrap=True)
        console.print(
            f"Opens affiliate {affiliate_id}'s portal once, until {expires_at}; send it to the affiliate only.",
            markup=False,
        )

    ops.emit(data, show)


@portal_app.command("revoke")
@handle_errors
def revoke(
    ctx: typer.Context, affiliate_id: Annotated[str, typer.Argument(help="The affiliate whose access ends.")]
) -> None:
    """End every portal link and session of the affiliate (links made afterwards work)."""
    ops = ops_of(ctx)
    require_affiliate(ops, affiliate_id)
    epoch = ops.backends.portal_access.revoke(affiliate_id)
    data = {"affiliate_id": affiliate_id, "revoked": True, "epoch": epoch}
    ops.emit(
        data,
        lambda console: console.print(
            f"Every portal link and session of affiliate {affiliate_id} has ended.", markup=False
        ),
    )


@changes_app.command("list")
@handle_errors
def list_changes(
    ctx: typer.Context,
    all_states: Annotated[bool, typer.Option("--all", help="Decided changes too, not only pending ones.")] = False,
) -> None:
    """The changes waiting for ops (every change with --all), oldest first."""
    ops = ops_of(ctx)
    changes = ops.backends.changes.listed(state=None if all_states else ChangeState.PENDING)
    rows = [change.to_json() for change in changes]

    def show(console: Console) -> None:
        if not rows:
            console.print("No change is waiting for ops." if not all_states else "No change yet.", markup=False)
            return
        table = people_table("change", "affiliate", "state", "submitted", "diff")
        for row in rows:
            table.add_row(row["change_id"], row["affiliate_id"], row["state"], row["submitted_at"], row["diff"])
        console.print(table)

    ops.emit(rows, show)


@changes_app.command("approve")
@handle_errors
def approve(ctx: typer.Context, change_id: Annotated[str, typer.Argument(help="The change to apply.")]) -> None:
    """Apply a pending change, after checking its config again as `affiliate put` does."""
    ops = ops_of(ctx)
    backends = ops.backends
    change, saved = approve_change(
        backends.affiliates,
        backends.changes,
        change_id,
        by=backends.caller(),
        allow_loopback=ops.target.allow_loopback,
        now=datetime.now(UTC),
    )
    data: dict[str, Any] = {**change.to_json(), "version": saved.version}
    ops.emit(
        data,
        lambda console: console.print(
            f"Change {change_id} approved: affiliate {change.affiliate_id} is at version {saved.version}.",
            markup=False,
        ),
    )


@changes_app.command("reject")
@handle_errors
def reject(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="The change to refuse.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: the affiliate reads it in the portal.")],
) -> None:
    """Refuse a pending change; the affiliate sees the reason."""
    ops = ops_of(ctx)
    if not reason.strip():
        raise UsageProblem("--reason: say why, the affiliate reads it.")
    backends = ops.backends
    change = reject_change(
        backends.changes, change_id, by=backends.caller(), reason=reason.strip(), now=datetime.now(UTC)
    )
    ops.emit(
        change.to_json(),
        lambda console: console.print(f"Change {change_id} rejected: {change.reason}", markup=False),
    )


@handle_errors
def history(ctx: typer.Context, affiliate_id: Annotated[str, typer.Argument(help="The affiliate's ID.")]) -> None:
    """Every change to the affiliate's config, newest first: when, who, from where (portal or cli), what."""
    ops = ops_of(ctx)
    require_affiliate(ops, affiliate_id)
    rows = [entry.to_json() for entry in ops.backends.changes.history(affiliate_id)]

    def show(console: Console) -> None:
        if not rows:
            console.print(f"No change of affiliate {affiliate_id} is recorded.", markup=False)
            return
        for row in rows:
            version = f", version {row['version']}" if row.get("version") is not None else ""
            console.print(f"{row['at']}  {row['source']}  {row['by']}{version}", markup=False)
            console.print("  " + row["diff"].replace("\n", "\n  "), markup=False)

    ops.emit(rows, show)
