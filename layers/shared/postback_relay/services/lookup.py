"""Find a transaction's postbacks (contract section 6: `postback deliveries --transaction`,
`postback replay --transaction`), without an index on the delivery log.

A conversion's postbacks are found through its records in the conversions log: each keeps the
messages it queued (the outbox), and each message carries its delivery's key (affiliate,
creation time, ID). A test-link postback (`test-<run_id>-<n>`) has no conversion record: its
run's fire step names each postback's delivery ID and creation time
(`services.testlink.postbacks.fired_details`). The deliveries are then read at those keys.
"""

from __future__ import annotations

from postback_relay.domain.delivery import DeliveryRef, DeliveryState
from postback_relay.domain.records import DeliveryRecord
from postback_relay.ports import DeliveryLog, KeptPostbacks, PostbackQueue, TestRunStore
from postback_relay.services.replay import replay_records
from postback_relay.services.testlink.postbacks import TEST_TRANSACTION_PREFIX, fired_refs


class DeliveryLookup:
    """A transaction's postbacks, newest first, and the failed ones among them."""

    def __init__(self, deliveries: DeliveryLog, conversions: KeptPostbacks, runs: TestRunStore) -> None:
        self._deliveries = deliveries
        self._conversions = conversions
        self._runs = runs

    @property
    def deliveries(self) -> DeliveryLog:
        """The delivery log the postbacks are read from (replay marks them there)."""
        return self._deliveries

    def refs(self, transaction_id: str) -> list[DeliveryRef]:
        """Where the transaction's postbacks are logged: its conversion records' kept messages,
        or, for a test-link postback, its run's fire step; empty when neither is kept."""
        if not transaction_id.startswith(TEST_TRANSACTION_PREFIX):
            return self._conversions.delivery_refs(transaction_id)
        run_id = transaction_id.removeprefix(TEST_TRANSACTION_PREFIX).rpartition("-")[0]
        run = self._runs.get(run_id) if run_id else None
        return fired_refs(run, transaction_id) if run is not None else []

    def by_transaction(self, transaction_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        """The transaction's postbacks, newest first (those gone from the log left out)."""
        return self._newest_first(transaction_id)[:limit]

    def failed(self, *, affiliate_id: str | None = None, transaction_id: str | None = None) -> list[DeliveryRecord]:
        """The failed postbacks: the transaction's (of this affiliate, when given), else the
        affiliate's, else every one in the log."""
        if transaction_id is None:
            return self._deliveries.failed(affiliate_id=affiliate_id)
        return [
            r
            for r in self._newest_first(transaction_id)
            if r.state is DeliveryState.FAILED and (affiliate_id is None or r.message.affiliate_id == affiliate_id)
        ]

    def _newest_first(self, transaction_id: str) -> list[DeliveryRecord]:
        records = self._deliveries.at(self.refs(transaction_id))
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records


def replay_failed(
    lookup: DeliveryLookup,
    queue: PostbackQueue,
    *,
    affiliate_id: str | None = None,
    transaction_id: str | None = None,
) -> list[str]:
    """`postback replay`: queue the failed deliveries again (the transaction's, the affiliate's,
    or every one); returns the IDs of those queued (services.replay.replay_records)."""
    failed = lookup.failed(affiliate_id=affiliate_id, transaction_id=transaction_id)
    return replay_records(lookup.deliveries, queue, failed)
