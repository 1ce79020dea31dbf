"""`postback preview`: the postbacks a conversion would produce, rendered and sent nowhere."""

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from postback_ops.cli_affiliates import require_affiliate
from postback_ops.cli_context import UsageProblem, handle_errors, ops_of, people_table
from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.errors import PostbackRefused
from postback_relay.domain.events import REVERSALS, Event, OfferType
from postback_relay.domain.links import expect_affiliate, read_link, read_tracker
from postback_relay.domain.postbacks import postback_messages
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
    amount: Annotated[str, typer.Option("--amount", help="What the customer paid, a decimal.")] = "0.00",
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code.")] = "EUR",
    payout: Annotated[
        str | None, typer.Option("--payout", help="The affiliate's commission, a decimal (default: none sent).")
    ] = None,
    without_money: Annotated[
        bool,
        typer.Option("--without-money", help="A registration or trial sent with no amount, payout or currency."),
    ] = False,
    offer_id: Annotated[
        str | None, typer.Option("--offer-id", help="The offer (default: the one the link names).")
    ] = None,
    offer_type: Annotated[OfferType, typer.Option("--offer-type", help="Where the link carries the affiliate.")] = (
        OfferType.REVSHARE
    ),
    transaction_id: Annotated[str, typer.Option("--transaction-id", help="The network's conversion ID.")] = (
        "preview-transaction"
    ),
    original_transaction_id: Annotated[
        str | None,
        typer.Option(
            "--original-transaction-id",
            help="A chargeback's or refund's original (default: preview-original); give the original's --link.",
        ),
    ] = None,
) -> None:
    """Render the postback URL(s) a conversion would produce, exactly as ingest would queue them.

    The same render path and checks as ingest (unsafe URL, message size): a postback ingest
    would refuse is shown refused, with the reason. Nothing is sent and nothing is recorded.
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
    money = _money(amount, currency, payout, without_money=without_money)
    original = (original_transaction_id or "preview-original") if event in REVERSALS else original_transaction_id
    conversion = _conversion(transaction_id, event, offer, offer_type, money, link, tracker, affiliate_id, original)
    postbacks, refused = _render(conversion, config, tracker_values, allow_loopback=ops.target.allow_loopback)
    data = {
        "affiliate_id": affiliate_id,
        "enabled": config.enabled,
        "event": event.value,
        "offer_id": offer,
        "tracker": tracker_values,
        "postbacks": postbacks,
    }
    if refused is not None:
        data["refused"] = refused

    def show(console: Console) -> None:
        if not config.enabled:
            console.print(f"Affiliate {affiliate_id} is disabled: a real conversion would fire nothing.", markup=False)
        if refused is not None:
            console.print(f"Ingest would refuse this conversion's postbacks: {refused['reason']}", markup=False)
            return
        if not postbacks:
            console.print(
                f"No postback of affiliate {affiliate_id} fires for {event.value} on offer {offer}.", markup=False
            )
            return
        table = people_table("#", "method", "url", "body")
        for postback in postbacks:
            table.add_row(str(postback["n"]), postback["method"], postback["url"], postback["body"] or "")
        console.print(table)

    ops.emit(data, show)


def _money(amount: str, currency: str, payout: str | None, *, without_money: bool) -> dict[str, str]:
    if without_money:
        return {}
    return {"amount": amount, "currency": currency} | ({} if payout is None else {"payout": payout})


def _conversion(
    transaction_id: str,
    event: Event,
    offer: str,
    offer_type: OfferType,
    money: dict[str, str],
    link: str | None,
    tracker: str | None,
    affiliate_id: str,
    original_transaction_id: str | None,
) -> Conversion:
    # Built from the same JSON the platform posts, so the conversion's own validation applies.
    return Conversion.model_validate(
        {
            "transaction_id": transaction_id,
            "event": event.value,
            "offer": {"id": offer, "type": offer_type.value},
            **money,
            "link": link,
            "tracker": tracker,
            "affiliate_id": affiliate_id if tracker is not None else None,
            "original_transaction_id": original_transaction_id,
            "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def _render(
    conversion: Conversion, config: AffiliateConfig, tracker_values: dict[str, str], *, allow_loopback: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The postbacks as ingest would queue them (the one render path), or why ingest would
    refuse them."""
    chosen = config.postbacks_for(conversion.event, conversion.offer_id)
    try:
        messages = postback_messages(
            conversion,
            config,
            tracker_values,
            created_at=datetime.now(UTC),
            allow_loopback=allow_loopback,
            postbacks=chosen,
        )
    except PostbackRefused as exc:
        return [], {"index": exc.index, "kind": exc.kind, "reason": exc.message}
    postbacks = [
        {
            "index": index,  # the config's list index, from 0
            "n": index + 1,  # as people count them: "postback 1", as the test verdict and the API say
            "method": message.method.value,
            "url": message.url,
            "body": message.body,
            "content_type": message.content_type,
        }
        for (index, _spec), message in zip(chosen, messages, strict=True)
    ]
    return postbacks, None
