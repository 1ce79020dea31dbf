"""`postback outbox recover`: queue again the postbacks of stream batches the outbox gave up on."""

from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console

from postback_ops.cli_context import ExitCode, handle_errors, ops_of, people_table
from postback_ops.outbox_recovery import OutboxRecovery

outbox_app = typer.Typer(help="The outbox: new conversions' postbacks on their way to the queue.", no_args_is_help=True)


@outbox_app.command("recover")
@handle_errors
def recover(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Find the conversions, queue nothing.")] = False,
) -> None:
    """Read the OutboxFailureQueue (its alarm fired), find each batch's conversions in the
    stream (within 24 h) or the conversions table, and queue their postbacks again.

    Exits 0 when every batch's postbacks were queued (the failure messages are deleted), 1 when
    the queue refused some (those failure messages stay: run it again)."""
    ops = ops_of(ctx)
    target = ops.target
    recovery = OutboxRecovery(
        dynamodb=target.client("dynamodb"),
        streams=target.client("dynamodbstreams"),
        sqs=target.client("sqs"),
        conversions_table=target.output("ConversionsTableName"),
        failure_queue_url=target.output("OutboxFailureQueueUrl"),
        queue=ops.backends.queue,
    )
    batches = recovery.recover(dry_run=dry_run)
    rows = [asdict(batch) for batch in batches]

    def show(console: Console) -> None:
        if not batches:
            console.print("The outbox's on-failure queue is empty: nothing to recover.")
            return
        table = people_table("shard", "sequence numbers", "condition", "found in", "conversions", "postbacks", "queued")
        for batch in batches:
            queued = "dry run" if dry_run else f"{batch.postbacks - batch.refused} of {batch.postbacks}"
            table.add_row(
                batch.shard_id,
                f"{batch.start_sequence_number}..{batch.end_sequence_number}",
                batch.condition,
                batch.source,
                str(len(batch.conversions)),
                str(batch.postbacks),
                queued,
            )
        console.print(table)

    ops.emit(rows, show)
    if any(batch.refused for batch in batches):
        raise typer.Exit(int(ExitCode.FAILED))
