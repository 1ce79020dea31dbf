"""In-memory fakes for the tests: one per port of postback_relay.ports, each declared as its
Protocol (a subclass, or a module-level assignment mypy checks where the Protocol's members
are properties), so that mypy sees a fake drift from its port.

    affiliates   FakeAffiliateStore      AffiliateStore
    conversions  FakeConversionLog       ConversionLog, KeptPostbacks
    queues       FakePostbackQueue       PostbackQueue
                 FakeRetryControl        RetryControl
                 FakeParkedRecords       ParkedRecords
    deliveries   FakeDeliveryLog         DispatchDeliveryLog (so DeliveryLog)
                 delivery_record, message, Tried: the one builder of delivery records
    senders      ScriptedSender          PostbackSender
    endpoints    FakeEndpointStore       EndpointStore
                 RecordingNotifier       Notifier
    testruns     FakeTestRunStore        TestRunStore
                 FakeTestWorkflow        TestWorkflow
    hops         ScriptedHttp, Answer    HopClient, HopAnswer
    cli          FakeBackends & co.      postback_ops.ports' Backends, TestRunner, EndpointDirectory
    clocks       Clock                   the dispatcher's settable clock
    samples      the guide's affiliate config and conversion
"""

from fakes.affiliates import FakeAffiliateStore
from fakes.conversions import FakeConversionLog
from fakes.deliveries import FakeDeliveryLog, Tried, delivery_record, message
from fakes.endpoints import FakeEndpointStore, RecordingNotifier
from fakes.hops import Answer, ScriptedHttp
from fakes.queues import FakeParkedRecords, FakePostbackQueue, FakeRetryControl
from fakes.samples import (
    INGEST_AFFILIATE_ID,
    INGEST_PPS_LINK,
    INGEST_REVSHARE_LINK,
    ingest_config,
    ingest_config_data,
    ingest_conversion,
    ingest_conversion_data,
)
from fakes.senders import ScriptedSender
from fakes.testruns import FakeTestRunStore, FakeTestWorkflow

__all__ = [
    "INGEST_AFFILIATE_ID",
    "INGEST_PPS_LINK",
    "INGEST_REVSHARE_LINK",
    "Answer",
    "FakeAffiliateStore",
    "FakeConversionLog",
    "FakeDeliveryLog",
    "FakeEndpointStore",
    "FakeParkedRecords",
    "FakePostbackQueue",
    "FakeRetryControl",
    "FakeTestRunStore",
    "FakeTestWorkflow",
    "RecordingNotifier",
    "ScriptedHttp",
    "ScriptedSender",
    "Tried",
    "delivery_record",
    "ingest_config",
    "ingest_config_data",
    "ingest_conversion",
    "ingest_conversion_data",
    "message",
]
