"""`postback outbox recover`: queue again the postbacks of stream batches the outbox gave up on."""

from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console

from postback_ops.cli_context import ExitCode, handle_errors, ops_of, people_table
from postback_ops.outbox_recovery import MAX_PAGES, OutboxRecovery, RecoveredBatch

outbox_app = typer.Typer(help="The outbox: new conversions' postbacks on their way to the queue.", no_args_is_help=True)


@outbox_app.command("recover")
@handle_errors
def recover(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Find the conversions, queue nothing.")] = False,
    max_pages: Annotated[
        int, typer.Option("--max-pages", min=1, help="GetRecords calls per batch before it is reported unfinished.")
    ] = MAX_PAGES,
) -> None:
    """Read the OutboxFailureQueue (its alarm fired), find each batch's conversions in the
    stream (within 24 h) or the conversions table, and queue their postbacks again.

    A failure message is deleted only when every conversion of its batch was found and every
    postback queued. Exits 0 when that holds for every batch; 1 when some failure message stays
    (the table says what is missing: run it again, or see the reason)."""
    ops = ops_of(ctx)
    target = ops.target
    recovery = OutboxRecovery(
        dynamodb=target.client("dynamodb"),
        streams=target.client("dynamodbstreams"),
        sqs=target.client("sqs"),
        conversions_table=target.output("ConversionsTableName"),
        failure_queue_url=target.output("OutboxFailureQueueUrl"),
        queue=ops.backends.queue,
        max_pages=max_pages,
    )
    batches = recovery.recover(dry_run=dry_run)
    rows = [asdict(batch) for batch in batches]

    def show(console: Console) -> None:
        if not batches:
            console.print("The outbox's on-failure queue is empty: nothing to recover.")
            return
        table = people_table(
            "shard", "sequence numbers", "condition", "found in", "conversions", "postbacks", "queued", "left"
        )
        for batch in batches:
            queued = "dry run" if dry_run else f"{batch.postbacks - batch.refused} of {batch.postbacks}"
            table.add_row(
                batch.shard_id,
                f"{batch.start_sequence_number}..{batch.end_sequence_number}",
                batch.condition,
                batch.source,
                f"{len(batch.conversions)} of {batch.batch_size}",
                str(batch.postbacks),
                queued,
                _left(batch),
            )
        console.print(table)

    ops.emit(rows, show)
    if not dry_run and not all(batch.deleted for batch in batches):
        raise typer.Exit(int(ExitCode.FAILED))


def _left(batch: RecoveredBatch) -> str:
    """What became of the failure message, in words."""
    if batch.deleted:
        return "done"
    reasons = [batch.error] if batch.error else batch.missing
    if not reasons:
        return "kept (dry run)"
    return "kept: " + "; ".join(reasons)
