"""One affiliate's health row (contract section 6's `health` row): the config script shows it
for every affiliate, the portal for the affiliate alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.delivery import Circuit
from postback_relay.domain.health import AffiliateHealth, affiliate_health, circuit_view, endpoint_of_url
from postback_relay.domain.records import DeliveryRecord
from postback_relay.domain.times import parse_utc


def health_row(
    config: AffiliateConfig,
    records: Sequence[DeliveryRecord],
    circuit: Callable[[str], Circuit | None],
    *,
    since: datetime,
    now: datetime,
) -> AffiliateHealth:
    """The row of the postbacks created since `since` (`records`: the affiliate's, as
    `DeliveryLog.created_since` reads them; older ones are left out), with the circuit of each
    endpoint its config or those postbacks name (`circuit`: the stored circuit of an endpoint,
    or None)."""
    records = [record for record in records if parse_utc(record.created_at) >= since]
    urls = [spec.url for spec in config.postbacks] + [record.message.url for record in records]
    endpoints = sorted({e for e in map(endpoint_of_url, urls) if e is not None})
    views = [circuit_view(circuit(e), e, now=now) for e in endpoints]
    return affiliate_health(config.affiliate_id, config.name, records, views, since=since, now=now)
