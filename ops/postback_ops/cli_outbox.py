"""`postback outbox recover`: queue again the postbacks of stream batches the outbox gave up on;
`postback outbox parked`: the records it could not read, re-queued once fixed."""

from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console

from postback_ops.cli_context import ExitCode, WholeSummaries, handle_errors, ops_of, people_table
from postback_ops.outbox_recovery import MAX_PAGES, OutboxRecovery, ParkedRecord, ParkedRecovery, RecoveredBatch
from postback_relay import wiring

outbox_app = typer.Typer(
    cls=WholeSummaries, help="The outbox: new conversions' postbacks on their way to the queue.", no_args_is_help=True
)


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
        parking=wiring.parked_records(target.output("OutboxParkedQueueUrl"), sqs=target.client("sqs")),
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


@outbox_app.command("parked")
@handle_errors
def parked(
    ctx: typer.Context,
    requeue: Annotated[
        bool, typer.Option("--requeue", help="Queue the postbacks of each parked conversion now readable.")
    ] = False,
) -> None:
    """Show the stream records the outbox could not read and parked (the OutboxParkedQueue's
    alarm fired): each conversion, why, and its raw image in the queue's message.

    Fix the conversion's item in the conversions table, then `--requeue`: each parked record
    whose item now reads is queued and leaves the parked queue. Exits 1 when `--requeue` left
    some (the `now` column says why)."""
    ops = ops_of(ctx)
    target = ops.target
    records = ParkedRecovery(
        dynamodb=target.client("dynamodb"),
        sqs=target.client("sqs"),
        conversions_table=target.output("ConversionsTableName"),
        parked_queue_url=target.output("OutboxParkedQueueUrl"),
        queue=ops.backends.queue,
    ).run(requeue=requeue)

    def show(console: Console) -> None:
        if not records:
            console.print("No parked records: the outbox read every record.")
            return
        table = people_table("conversion", "sequence number", "why parked", "now", "postbacks", "left")
        for record in records:
            table.add_row(
                record.conversion_id,
                record.sequence_number,
                record.reason + (" (image cut)" if record.image_cut else ""),
                record.now or "-",
                str(record.postbacks),
                _parked_left(record, requeue=requeue),
            )
        console.print(table)

    ops.emit([asdict(record) for record in records], show)
    if requeue and not all(record.requeued for record in records):
        raise typer.Exit(int(ExitCode.FAILED))


def _parked_left(record: ParkedRecord, *, requeue: bool) -> str:
    if record.requeued:
        return "re-queued"
    return "kept" if requeue else "parked"
