"""Sample affiliate configs and conversions: the guide's links, affiliate 1234567."""

from __future__ import annotations

from postback_relay.domain.config import AffiliateConfig, parse_config
from postback_relay.domain.conversion import Conversion

INGEST_AFFILIATE_ID = "1234567"
INGEST_REVSHARE_LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0"
    "&tracker=trID_a1-T9-c123-x_trID"
)
INGEST_PPS_LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&id=66013&e=1&w=0"
    "&;tracker=trID_1234567_a1-T9-c123-x_trID"
)


def ingest_config_data(affiliate_id: str = INGEST_AFFILIATE_ID, **changes: object) -> dict[str, object]:
    """An affiliate config: sale+rebill on every offer, registration on offer 89 only."""
    data: dict[str, object] = {
        "affiliate_id": affiliate_id,
        "name": "Acme Media",
        "tracker": {"fields": ["affid", "transid", "clickid", "whateverid"], "separator": "-"},
        "postbacks": [
            {
                "events": ["sale", "rebill"],
                "url": "https://track.acme.example/postback?cid={clickid}&payout={amount}&cur={currency}"
                "&ev={event}&offer={offer_id}",
            },
            {"events": ["registration"], "url": "https://track.acme.example/lead?cid={clickid}", "offers": ["89"]},
        ],
    }
    data.update(changes)
    return data


def ingest_config(affiliate_id: str = INGEST_AFFILIATE_ID, **changes: object) -> AffiliateConfig:
    return parse_config(ingest_config_data(affiliate_id, **changes), allow_loopback=True)


def ingest_conversion_data(**changes: object) -> dict[str, object]:
    """The contract's sample conversion (revshare sale); a change to None drops the field."""
    data: dict[str, object] = {
        "transaction_id": "T-2026-000123",
        "event": "sale",
        "offer": {"id": "89", "type": "revshare", "name": "Dating FR"},
        "amount": "25.00",
        "currency": "EUR",
        "link": INGEST_REVSHARE_LINK,
        "occurred_at": "2026-11-25T12:00:00Z",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def ingest_conversion(**changes: object) -> Conversion:
    return Conversion.model_validate(ingest_conversion_data(**changes))
