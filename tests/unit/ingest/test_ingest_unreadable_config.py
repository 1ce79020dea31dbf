"""A stored affiliate configuration the code no longer accepts (saved under other rules): the
DynamoDB store says so in ops' words, and ingest records that affiliate's conversions with the
reason, leaving the others of the request alone (never a 503 for the whole request)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from fakes import INGEST_AFFILIATE_ID, FakeConversionLog, ingest_config, ingest_conversion

from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore
from postback_relay.domain.conversion import ConversionOutcome
from postback_relay.domain.errors import UnreadableConfigError
from postback_relay.services.ingest import IngestService

NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
OTHER_AFFILIATE_ID = "7654321"
OTHER_LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=7654321&e=1&w=0"
    "&tracker=trID_a1-T9-c777-x_trID"
)


@pytest.fixture
def store(aws: dict[str, str]) -> DynamoAffiliateStore:
    """GIVEN the affiliates table with 1234567 saved, and 7654321's item holding a config
    whose postback URL today's rules refuse (no scheme a postback may use)."""
    table = aws["AffiliatesTableName"]
    affiliates = DynamoAffiliateStore(table, client=boto3.client("dynamodb"), allow_loopback=True)
    affiliates.put(ingest_config(), expected_version=None, updated_by="test")
    saved = json.loads(
        boto3.client("dynamodb").get_item(TableName=table, Key={"affiliate_id": {"S": INGEST_AFFILIATE_ID}})["Item"][
            "config"
        ]["S"]
    )
    saved["affiliate_id"] = OTHER_AFFILIATE_ID
    saved["postbacks"][0]["url"] = "gopher://track.other.example/pb?cid={clickid}"
    boto3.client("dynamodb").put_item(
        TableName=table,
        Item={
            "affiliate_id": {"S": OTHER_AFFILIATE_ID},
            "config": {"S": json.dumps(saved)},
            "enabled": {"BOOL": True},
            "version": {"N": "1"},
            "updated_at": {"S": "2026-01-01T00:00:00Z"},
            "updated_by": {"S": "older code"},
        },
    )
    return affiliates


def test_the_store_names_the_affiliate_whose_stored_config_no_longer_reads(store: DynamoAffiliateStore) -> None:
    # WHEN the unreadable item is read
    with pytest.raises(UnreadableConfigError) as raised:
        store.get(OTHER_AFFILIATE_ID)

    # THEN the error names the affiliate and what ops do about it
    assert OTHER_AFFILIATE_ID in raised.value.message
    assert "put it again" in raised.value.message
    # AND a readable neighbour still reads
    readable = store.get(INGEST_AFFILIATE_ID)
    assert readable is not None and readable.config.affiliate_id == INGEST_AFFILIATE_ID


def test_ingest_records_that_affiliates_conversion_with_the_reason_and_fires_the_others(
    store: DynamoAffiliateStore,
) -> None:
    # GIVEN ingest over that store
    log = FakeConversionLog()
    service = IngestService(store, log, clock=lambda: NOW, allow_loopback=True)

    # WHEN one request carries a conversion for each affiliate
    report = service.ingest([ingest_conversion(), ingest_conversion(transaction_id="T-OTHER-1", link=OTHER_LINK)])

    # THEN 1234567's postback is queued as ever
    mine, other = report.answers
    assert mine.result.outcome is ConversionOutcome.QUEUED
    # AND 7654321's conversion is recorded, with nothing fired, the reason and its kind
    assert other.result.outcome is ConversionOutcome.TRACKER_MISMATCH
    assert other.result.postbacks_queued == 0
    assert other.result.error_kind == "invalid_config"
    assert other.result.reason is not None and "put it again" in other.result.reason
    (queued,) = log.outbox
    assert "cid=c123" in queued.url
