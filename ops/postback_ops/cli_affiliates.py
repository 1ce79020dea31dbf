"""`postback affiliate ...` and `postback export`: affiliate configs in and out of the stack."""

import difflib
import json
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from postback_ops.cli_context import ExitCode, Ops, WholeSummaries, fail, handle_errors, ops_of, people_table
from postback_relay.domain import messages
from postback_relay.domain.changes import ChangeSource
from postback_relay.domain.config import AffiliateConfig, dump_config, load_config_text
from postback_relay.domain.errors import ConflictError, NotFoundError
from postback_relay.domain.records import StoredAffiliate
from postback_relay.ports import ChangeLog
from postback_relay.services import changes as config_changes

affiliate_app = typer.Typer(
    cls=WholeSummaries,
    # Plain help: no `<bool>` beside every flag, and summaries kept to their first line.
    rich_markup_mode=None,
    help="Affiliate postback configs: create or update from a file, show, list, disable, enable.",
    no_args_is_help=True,
)

MASK = "********"
# An exported file remembers which version of which stack it was read from, so that `put`
# can refuse it once someone else has changed the config in between.
_READ_AT = re.compile(r"^#\s*read-at:\s*(?P<stack>\S+)\s+version\s+(?P<version>\d+)\s*$", re.MULTILINE)
_SAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# Contract section 3: a new affiliate's postbacks fire from its next conversion, within 5 s; a
# change to an existing one reaches the functions within their config cache time.
NEW_AFFILIATE_WITHIN_S = 5
DEFAULT_CONFIG_CACHE_S = 60  # template.yaml's ConfigCacheSeconds, for a stack without that output


def config_document(config: AffiliateConfig) -> dict[str, Any]:
    """The config as plain YAML/JSON data (tuples become lists), exactly what `put` reads back."""
    document: dict[str, Any] = json.loads(json.dumps(dump_config(config), default=str))
    return document


def config_yaml(config: AffiliateConfig) -> str:
    return yaml.safe_dump(config_document(config), sort_keys=False, allow_unicode=True, default_flow_style=False)


def masked_document(config: AffiliateConfig) -> dict[str, Any]:
    """What `get` shows: the signing secret is never printed."""
    document = config_document(config)
    if document.get("signing_secret"):
        document["signing_secret"] = MASK
    return document


def read_at(text: str) -> tuple[str, int] | None:
    match = _READ_AT.search(text)
    return (match["stack"], int(match["version"])) if match else None


def stored_summary(stored: StoredAffiliate) -> dict[str, Any]:
    return {
        "affiliate_id": stored.config.affiliate_id,
        "name": stored.config.name,
        "enabled": stored.config.enabled,
        "version": stored.version,
        "updated_at": stored.updated_at,
        "updated_by": stored.updated_by,
    }


def record_change(
    changes: ChangeLog, before: AffiliateConfig | None, after: StoredAffiliate, *, by: str, source: ChangeSource
) -> None:
    """The affiliate's history entry for a change the config script just made."""
    config_changes.record_change(changes, before, after, by=by, source=source, now=datetime.now(UTC))


def require_affiliate(ops: Ops, affiliate_id: str) -> StoredAffiliate:
    stored = ops.backends.affiliates.get(affiliate_id)
    if stored is None:
        raise NotFoundError(messages.no_affiliate(affiliate_id))
    return stored


@affiliate_app.command("put")
@handle_errors
def put(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="The affiliate's config, YAML or JSON.", exists=True, dir_okay=False, readable=True),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the change against the stored config; write nothing.")
    ] = False,
) -> None:
    """Create or update an affiliate from a YAML/JSON file, after validating it.

    Refuses the file (exit 2) naming each wrong field and why, and refuses to overwrite a config
    someone else changed since it was read (exit 5).
    """
    ops = ops_of(ctx)
    text = file.read_text(encoding="utf-8")
    config = load_config_text(text, allow_loopback=ops.target.allow_loopback, source=str(file))
    store = ops.backends.affiliates
    stored = store.get(config.affiliate_id)
    before = config_yaml(stored.config) if stored else ""
    after = config_yaml(config)
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"stored (version {stored.version})" if stored else "stored (none)",
            tofile=str(file),
        )
    )
    change = "none" if before == after else ("update" if stored else "create")
    stale = _stale_reason(text, ops.target.name, stored) if change != "none" else None
    result: dict[str, Any] = {
        "affiliate_id": config.affiliate_id,
        "dry_run": dry_run,
        "change": change,
        "version": stored.version if stored else None,
        "diff": diff,
        "takes_effect_within_s": _takes_effect_within_s(ops, change),
    }
    if dry_run or change == "none":
        ops.emit(result, lambda console: _show_put(console, result))
        if stale:
            raise fail(ExitCode.CONFLICT, stale)
        return
    if stale:
        raise ConflictError(stale)
    by = ops.backends.caller()
    saved = store.put(config, expected_version=stored.version if stored else None, updated_by=by)
    record_change(ops.backends.changes, stored.config if stored else None, saved, by=by, source=ChangeSource.CLI)
    result["version"] = saved.version
    ops.emit(result, lambda console: _show_put(console, result))


def _takes_effect_within_s(ops: Ops, change: str) -> int | None:
    """How long until the relay acts on this put: a new affiliate at once, a change within the
    functions' config cache time (the stack's ConfigCacheSeconds output)."""
    if change == "create":
        return NEW_AFFILIATE_WITHIN_S
    if change == "update":
        raw = ops.target.outputs.get("ConfigCacheSeconds")
        return math.ceil(float(raw)) if raw else DEFAULT_CONFIG_CACHE_S
    return None


def _stale_reason(text: str, stack: str, stored: StoredAffiliate | None) -> str | None:
    read = read_at(text)
    if read is None or read[0] != stack:
        return None
    stored_version = stored.version if stored else None
    if stored_version == read[1]:
        return None
    now = f"version {stored_version}" if stored else "gone"
    return (
        f"The config was read at version {read[1]} and is now {now}: someone changed it since. "
        "Export it again and reapply your change."
    )


def _show_put(console: Console, result: dict[str, Any]) -> None:
    if result["diff"]:
        console.print(result["diff"], markup=False, end="")
    affiliate = result["affiliate_id"]
    if result["change"] == "none":
        console.print(f"Affiliate {affiliate}: unchanged (version {result['version']}).", markup=False)
    elif result["dry_run"]:
        console.print(f"Dry run: affiliate {affiliate} would be {result['change']}d; nothing written.", markup=False)
    else:
        console.print(f"Affiliate {affiliate} {result['change']}d: version {result['version']}.", markup=False)
    within = result.get("takes_effect_within_s")
    if within is not None:
        verb = "would fire" if result["dry_run"] else "fire"
        if result["change"] == "create":
            console.print(f"Its postbacks {verb} from its next conversion (within {within} s).", markup=False)
        else:
            when = "would reach" if result["dry_run"] else "reaches"
            console.print(
                f"The change {when} the relay within {within} s (the functions' config cache); "
                "conversions before then still use the previous version.",
                markup=False,
            )


@affiliate_app.command("get")
@handle_errors
def get(
    ctx: typer.Context, affiliate_id: Annotated[str, typer.Argument(help="The affiliate's ID on the network.")]
) -> None:
    """Show one affiliate's config (the signing secret masked) and who changed it last."""
    ops = ops_of(ctx)
    stored = require_affiliate(ops, affiliate_id)
    data = {**stored_summary(stored), "config": masked_document(stored.config)}

    def show(console: Console) -> None:
        # The same header as `export`: saved to a file, edited and put back, it is refused if
        # someone changed the config in between.
        console.print(
            f"# Affiliate {affiliate_id}, updated {stored.updated_at} by {stored.updated_by or 'unknown'}.\n"
            f"# read-at: {ops.target.name} version {stored.version}",
            markup=False,
        )
        text = yaml.safe_dump(data["config"], sort_keys=False, allow_unicode=True, default_flow_style=False)
        console.print(text, markup=False, end="")

    ops.emit(data, show)


@affiliate_app.command("list")
@handle_errors
def list_affiliates(ctx: typer.Context) -> None:
    """List every affiliate: enabled or not, postbacks, events, version, last change."""
    ops = ops_of(ctx)
    stored_all = sorted(ops.backends.affiliates.list(), key=lambda s: s.config.affiliate_id)
    rows = [
        {
            **stored_summary(s),
            "postbacks": len(s.config.postbacks),
            "events": sorted({e.value for p in s.config.postbacks for e in p.events}),
        }
        for s in stored_all
    ]

    def show(console: Console) -> None:
        table = people_table("affiliate", "name", "enabled", "postbacks", "events", "version", "updated", "by")
        for row in rows:
            table.add_row(
                row["affiliate_id"],
                row["name"],
                "yes" if row["enabled"] else "no",
                str(row["postbacks"]),
                ", ".join(row["events"]),
                str(row["version"]),
                row["updated_at"],
                row["updated_by"] or "",
            )
        console.print(table)

    ops.emit(rows, show)


def _set_enabled(ctx: typer.Context, affiliate_id: str, enabled: bool) -> None:
    ops = ops_of(ctx)
    stored = require_affiliate(ops, affiliate_id)
    word = "enabled" if enabled else "disabled"
    if stored.config.enabled != enabled:
        by = ops.backends.caller()
        before = stored.config
        stored = ops.backends.affiliates.set_enabled(affiliate_id, enabled, updated_by=by)
        record_change(ops.backends.changes, before, stored, by=by, source=ChangeSource.CLI)
    else:
        ops.note(f"Affiliate {affiliate_id} was already {word}.")
    ops.emit(
        stored_summary(stored),
        lambda console: console.print(f"Affiliate {affiliate_id} {word} (version {stored.version}).", markup=False),
    )


@affiliate_app.command("disable")
@handle_errors
def disable(ctx: typer.Context, affiliate_id: Annotated[str, typer.Argument(help="The affiliate's ID.")]) -> None:
    """Stop firing this affiliate's postbacks (conversions are still recorded)."""
    _set_enabled(ctx, affiliate_id, False)


@affiliate_app.command("enable")
@handle_errors
def enable(ctx: typer.Context, affiliate_id: Annotated[str, typer.Argument(help="The affiliate's ID.")]) -> None:
    """Fire this affiliate's postbacks again."""
    _set_enabled(ctx, affiliate_id, True)


@handle_errors
def export(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Where to write one <affiliate_id>.yaml per affiliate.", file_okay=False)
    ],
) -> None:
    """Write every affiliate config to files that `affiliate put` reads back unchanged.

    The files hold signing secrets: they are created readable by their owner only.
    """
    ops = ops_of(ctx)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, Any]] = []
    for stored in sorted(ops.backends.affiliates.list(), key=lambda s: s.config.affiliate_id):
        affiliate_id = stored.config.affiliate_id
        path = directory / f"{_SAFE_FILE_NAME.sub('_', affiliate_id)}.yaml"
        header = (
            f"# Affiliate {affiliate_id}, exported from {ops.target.name}.\n"
            "# `postback affiliate put` refuses this file if the stored config changed since:\n"
            f"# read-at: {ops.target.name} version {stored.version}\n"
        )
        _write_private(path, header + config_yaml(stored.config))
        written.append({"affiliate_id": affiliate_id, "path": str(path), "version": stored.version})

    def show(console: Console) -> None:
        for item in written:
            console.print(f"{item['path']}  (version {item['version']})", markup=False)
        console.print(f"{len(written)} affiliate config(s) written to {directory}.", markup=False)

    ops.emit(written, show)


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
