"""`postback preview`: the postbacks a conversion would produce, rendered and sent nowhere."""

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from postback_ops.cli_affiliates import require_affiliate
from postback_ops.cli_context import UsageProblem, handle_errors, ops_of, people_table
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.events import Event, OfferType
from postback_relay.domain.links import expect_affiliate, read_link, read_tracker
from postback_relay.domain.render import macro_values, render_postback
from postback_relay.domain.tracker import parse_tracker


@handle_errors
def preview(
    ctx: typer.Context,
    affiliate_id: Annotated[str, typer.Argument(help="The affiliate whose config renders the postbacks.")],
    event: Annotated[Event, typer.Option("--event", help="The conversion event.")],
    link: Annotated[str | None, typer.Option("--link", help="The network link the visitor came through.")] = None,
    tracker: Annotated[
        str | None, typer.Option("--tracker", help="Instead of --link: the trID_..._trID string alone.")
    ] = None,
    amount: Annotated[str, typer.Option("--amount", help="The payout, a decimal.")] = "0.00",
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code.")] = "EUR",
    offer_id: Annotated[
        str | None, typer.Option("--offer-id", help="The offer (default: the one the link names).")
    ] = None,
    offer_type: Annotated[OfferType, typer.Option("--offer-type", help="Where the link carries the affiliate.")] = (
        OfferType.REVSHARE
    ),
    transaction_id: Annotated[str, typer.Option("--transaction-id", help="The network's conversion ID.")] = (
        "preview-transaction"
    ),
) -> None:
    """Render the postback URL(s) a conversion would produce, exactly as dispatch would send them.

    Nothing is sent and nothing is recorded.
    """
    ops = ops_of(ctx)
    if (link is None) == (tracker is None):
        raise UsageProblem("Give exactly one of --link or --tracker.")
    stored = require_affiliate(ops, affiliate_id)
    config = stored.config
    if link is not None:
        info = read_link(link, offer_type)
    else:
        assert tracker is not None
        info = read_tracker(tracker, offer_type, affiliate_id if offer_type is OfferType.REVSHARE else None)
    expect_affiliate(info, affiliate_id)
    tracker_values = parse_tracker(info.values, config.tracker)
    offer = offer_id or info.offer_id
    if not offer:
        raise UsageProblem("The link names no offer: give --offer-id.")
    # Built from the same JSON the platform posts, so the conversion's own validation applies.
    conversion = Conversion.model_validate(
        {
            "transaction_id": transaction_id,
            "event": event.value,
            "offer": {"id": offer, "type": offer_type.value},
            "amount": amount,
            "currency": currency,
            "link": link,
            "tracker": tracker,
            "affiliate_id": affiliate_id if tracker is not None else None,
            "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    values = macro_values(conversion, affiliate_id, tracker_values)
    postbacks: list[dict[str, Any]] = []
    for index, spec in config.postbacks_for(event, offer):
        rendered = render_postback(spec, values)
        postbacks.append(
            {
                "index": index,
                "method": rendered.method.value,
                "url": rendered.url,
                "body": rendered.body,
                "content_type": rendered.content_type,
            }
        )
    data = {
        "affiliate_id": affiliate_id,
        "enabled": config.enabled,
        "event": event.value,
        "offer_id": offer,
        "tracker": tracker_values,
        "postbacks": postbacks,
    }

    def show(console: Console) -> None:
        if not config.enabled:
            console.print(f"Affiliate {affiliate_id} is disabled: a real conversion would fire nothing.", markup=False)
        if not postbacks:
            console.print(
                f"No postback of affiliate {affiliate_id} fires for {event.value} on offer {offer}.", markup=False
            )
            return
        table = people_table("#", "method", "url", "body")
        for postback in postbacks:
            table.add_row(str(postback["index"]), postback["method"], postback["url"], postback["body"] or "")
        console.print(table)

    ops.emit(data, show)
