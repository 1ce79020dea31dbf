# ======================================================================================
# INGEST: in-memory AffiliateStore, ConversionLog and PostbackQueue for the ingest service
# ======================================================================================

from collections.abc import Callable as _IngestCallable
from collections.abc import Sequence as _IngestSequence
from datetime import datetime as _IngestDatetime

from postback_relay.domain.config import AffiliateConfig as _IngestAffiliateConfig
from postback_relay.domain.config import parse_config as _ingest_parse_config
from postback_relay.domain.conversion import Conversion as _IngestConversion
from postback_relay.domain.conversion import ConversionResult as _IngestConversionResult
from postback_relay.domain.delivery import PostbackMessage as _IngestPostbackMessage
from postback_relay.domain.errors import ConflictError as _IngestConflictError
from postback_relay.domain.errors import InfrastructureError as _IngestInfrastructureError
from postback_relay.domain.errors import NotFoundError as _IngestNotFoundError
from postback_relay.ports import StoredAffiliate as _IngestStoredAffiliate


class FakeAffiliateStore:
    """AffiliateStore in a dict; counts `get` calls so cache tests can see reads."""

    def __init__(self, *configs: _IngestAffiliateConfig) -> None:
        self.items: dict[str, _IngestStoredAffiliate] = {}
        self.gets = 0
        for config in configs:
            self.put(config, expected_version=None, updated_by="test")

    def get(self, affiliate_id: str) -> _IngestStoredAffiliate | None:
        self.gets += 1
        return self.items.get(affiliate_id)

    def put(
        self, config: _IngestAffiliateConfig, *, expected_version: int | None, updated_by: str
    ) -> _IngestStoredAffiliate:
        current = self.items.get(config.affiliate_id)
        if (current.version if current else None) != expected_version:
            raise _IngestConflictError(f"affiliate {config.affiliate_id} is not at version {expected_version}")
        stored = _IngestStoredAffiliate(
            config=config, version=(expected_version or 0) + 1, updated_at="2026-11-25T12:00:00Z", updated_by=updated_by
        )
        self.items[config.affiliate_id] = stored
        return stored

    def list(self) -> list[_IngestStoredAffiliate]:
        return sorted(self.items.values(), key=lambda stored: stored.config.affiliate_id)

    def set_enabled(self, affiliate_id: str, enabled: bool, *, updated_by: str) -> _IngestStoredAffiliate:
        current = self.items.get(affiliate_id)
        if current is None:
            raise _IngestNotFoundError(f"affiliate {affiliate_id} does not exist")
        stored = _IngestStoredAffiliate(
            config=current.config.model_copy(update={"enabled": enabled}),
            version=current.version + 1,
            updated_at=current.updated_at,
            updated_by=updated_by,
        )
        self.items[affiliate_id] = stored
        return stored


class FakeConversionLog:
    """ConversionLog in a dict; `fail_after` makes the n+1-th record raise InfrastructureError.
    `outbox` lists the messages of every record written, in order: what the stream would queue."""

    def __init__(self, *, fail_after: int | None = None) -> None:
        self.records: dict[str, tuple[_IngestConversion, _IngestConversionResult]] = {}
        self.outbox: list[_IngestPostbackMessage] = []
        self.writes = 0
        self.fail_after = fail_after

    def record(
        self,
        conversion: _IngestConversion,
        result: _IngestConversionResult,
        messages: _IngestSequence[_IngestPostbackMessage] = (),
        *,
        received_at: _IngestDatetime | None = None,
    ) -> _IngestConversionResult | None:
        if self.fail_after is not None and self.writes >= self.fail_after:
            raise _IngestInfrastructureError("the conversion log is down")
        self.writes += 1
        first = self.records.get(conversion.conversion_id)
        if first is not None:
            return first[1]
        self.records[conversion.conversion_id] = (conversion, result)
        self.outbox.extend(messages)
        return None


class FakePostbackQueue:
    """PostbackQueue in a list. `refuse` decides per message whether the queue refuses it;
    `down` makes `send` raise InfrastructureError."""

    def __init__(self) -> None:
        self.sent: list[_IngestPostbackMessage] = []
        self.calls = 0
        self.down = False
        self.refuse: _IngestCallable[[_IngestPostbackMessage], bool] = lambda message: False

    def send(self, messages: _IngestSequence[_IngestPostbackMessage]) -> list[_IngestPostbackMessage]:
        self.calls += 1
        if self.down:
            raise _IngestInfrastructureError("the queue is down")
        refused = [message for message in messages if self.refuse(message)]
        self.sent.extend(message for message in messages if not self.refuse(message))
        return refused


# INGEST: sample affiliate configs and conversions (the guide's links, affiliate 1234567)

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


def ingest_config(affiliate_id: str = INGEST_AFFILIATE_ID, **changes: object) -> _IngestAffiliateConfig:
    return _ingest_parse_config(ingest_config_data(affiliate_id, **changes), allow_loopback=True)


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


def ingest_conversion(**changes: object) -> _IngestConversion:
    return _IngestConversion.model_validate(ingest_conversion_data(**changes))
