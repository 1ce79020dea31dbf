"""Play the network's platform against a relay: signed conversions built from events/.

The demo and the end-to-end tests post conversions exactly as the platform does (contract
section 2): a JSON body, `X-Postback-Timestamp` and `X-Postback-Signature: v1=<hex>`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from postback_ops.template import REPO_ROOT
from postback_relay.domain.events import REVERSALS, Event, OfferType
from postback_relay.domain.signing import sign_conversion_request

EVENTS_DIR = REPO_ROOT / "events"
SAMPLE_FILES = {OfferType.REVSHARE: "ingest_revshare.json", OfferType.PPS: "ingest_pps.json"}


def sample_conversion(offer_type: OfferType, *, events_dir: Path = EVENTS_DIR) -> dict[str, Any]:
    """The conversion in the sample API Gateway event of this offer type."""
    event = json.loads((events_dir / SAMPLE_FILES[offer_type]).read_text(encoding="utf-8"))
    conversion: dict[str, Any] = json.loads(event["body"])
    return conversion


def every_sample_conversion(prefix: str, *, events_dir: Path = EVENTS_DIR) -> list[dict[str, Any]]:
    """One conversion per offer type and event (reversals aside: they name an original), each
    with its own transaction ID."""
    conversions = []
    for offer_type in OfferType:
        sample = sample_conversion(offer_type, events_dir=events_dir)
        for event in (e for e in Event if e not in REVERSALS):
            conversions.append(
                {
                    **sample,
                    "transaction_id": f"{prefix}-{offer_type.value}-{event.value}",
                    "event": event.value,
                    "amount": "0" if event is Event.REGISTRATION else sample["amount"],
                }
            )
    return conversions


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "X-Postback-Timestamp": str(ts),
        "X-Postback-Signature": sign_conversion_request(secret, ts, body),
    }


def post_conversions(
    api_url: str, payload: Mapping[str, Any] | bytes, secret: str, *, timestamp: int | None = None
) -> requests.Response:
    """POST one conversion or a `{"conversions": [...]}` batch, signed as the platform signs."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(
        f"{api_url}/conversions", data=body, headers=signed_headers(secret, body, timestamp=timestamp), timeout=30
    )
