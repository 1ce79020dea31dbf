"""The one place that builds the adapters and services: for the four functions, the config
script and the bench.

Each builder takes a function's settings model (postback_relay.settings) and, optionally, the
clients and adapters to use: a function passes none (its boto3 clients are made here, on the
default session), the config script passes a target's clients, tests and the bench pass
in-memory fakes or clients of their own.

Every import here is inside a function: a handler imports this module at cold start, and the
services, the adapters and boto3 load on its first call (or at SnapStart init), not at import
(docs/benchmarks.md).

`OnFirstUse` holds a function's service, built on the first invocation and kept for the
life of the environment (a handler also takes a service as an argument: tests pass theirs);
`reset()` forgets every one of them, as a new cold start would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from postback_relay.settings import MAX_WORKERS_LIMIT

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

    from postback_relay.adapters.dynamodb_endpoints import DynamoEndpointStore
    from postback_relay.adapters.dynamodb_portal import DynamoPortalStore
    from postback_relay.domain.records import OutboxRecord
    from postback_relay.ports import (
        AffiliateStore,
        ConversionLog,
        DeliveryLog,
        DispatchDeliveryLog,
        EndpointStore,
        KeptPostbacks,
        Notifier,
        ParkedRecords,
        PostbackQueue,
        PostbackSender,
        RetryControl,
        TestRunStore,
        TestWorkflow,
    )
    from postback_relay.services.dispatch import Dispatcher
    from postback_relay.services.ingest import IngestService
    from postback_relay.services.lookup import DeliveryLookup
    from postback_relay.services.outbox import OutboxService
    from postback_relay.services.portal import PortalService
    from postback_relay.services.testlink import TestLinkService
    from postback_relay.services.testlink.runs import TestRunStarter
    from postback_relay.services.testlink.tracker import TestRunTracker
    from postback_relay.settings import (
        DispatchSettings,
        IngestSettings,
        OutboxSettings,
        PortalSettings,
        TestLinkSettings,
    )


class OnFirstUse[T]:
    """A function's service: built by `build` on the first call, then the same one each call."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._built: list[T] = []
        _HELD.append(self)

    def __call__(self) -> T:
        if not self._built:
            self._built.append(self._build())
        return self._built[0]

    def use(self, service: T) -> None:
        """The service to hand out from now on (one the bench or a test built), until `reset`."""
        self._built[:] = [service]

    def reset(self) -> None:
        """Forget the service: the next call builds it again (new settings, new clients)."""
        self._built.clear()


_HELD: list[OnFirstUse[Any]] = []


def reset() -> None:
    """Forget every function's service, as a new cold start would (tests, the SnapStart restore)."""
    for held in _HELD:
        held.reset()


def refresh_after_restore() -> None:
    """What every function refreshes after a SnapStart restore (register it with
    `coldstart.after_restore`): the `random` seed, Powertools' cached parameters and secrets
    (they may have rotated since the snapshot), and, unless their credentials renew themselves,
    the boto3 session and every service built on its clients (built again on the next call)."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    from postback_relay.coldstart import credentials_refresh_themselves, reseed_random

    reseed_random()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    if not credentials_refresh_themselves(boto3.DEFAULT_SESSION):
        boto3.setup_default_session()
        reset()


# --- the budget of every AWS call the functions make ----------------------------------------
# One botocore Config for every client built here (botocore's defaults are 60 s timeouts,
# legacy retries and 10 pooled connections). DynamoDB, SQS, SNS, Step Functions and Secrets
# Manager answer in milliseconds: a call that has not connected in 1 s or answered in 2 s is
# retried, three attempts in all (standard mode, which retries throttling and 5xx with jittered
# backoff of at most 1 s then 2 s). So one call ends within AWS_CALL_BUDGET_S (12 s), well
# inside the functions' timeouts (dispatch 30 s), and the dispatcher's guard counts on it.
AWS_CONNECT_TIMEOUT_S = 1.0
AWS_READ_TIMEOUT_S = 2.0
AWS_ATTEMPTS = 3  # the first attempt and two retries
# At least the dispatcher's workers (settings.MAX_WORKERS_LIMIT bounds MAX_WORKERS): each
# worker's AWS calls get a connection of their own rather than waiting for one.
AWS_POOL_CONNECTIONS = MAX_WORKERS_LIMIT


def aws_call_budget_s(attempts: int = AWS_ATTEMPTS) -> float:
    """The longest one AWS call can take with `attempts`: each attempt's connect and read
    timeouts, plus standard mode's backoff before each retry (at most 2**(n-1) s, capped at 20)."""
    backoff = sum(min(2.0**retry, 20.0) for retry in range(attempts - 1))
    return attempts * (AWS_CONNECT_TIMEOUT_S + AWS_READ_TIMEOUT_S) + backoff


AWS_CALL_BUDGET_S = aws_call_budget_s()
# Ingest runs for 10 s at most: two attempts (7 s) let a failing write still answer 503 in time.
INGEST_AWS_ATTEMPTS = 2


def aws_config(*, attempts: int = AWS_ATTEMPTS) -> Any:
    """The botocore Config of every client the functions build (`attempts` fewer for a call
    that must be shorter still: the circuit notices)."""
    from botocore.config import Config

    return Config(
        connect_timeout=AWS_CONNECT_TIMEOUT_S,
        read_timeout=AWS_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=AWS_POOL_CONNECTIONS,
    )


def aws_client(service: str, *, attempts: int = AWS_ATTEMPTS) -> Any:
    """A boto3 client on the default session (Lambda's credentials and region), on the budget."""
    import boto3

    return boto3.client(service, config=aws_config(attempts=attempts))  # type: ignore[call-overload]


def table_name_and_client(table: Table) -> tuple[str, DynamoDBClient]:
    """A boto3 Table resource as the DynamoDB adapters take it: its name, and a low-level
    client for the same region and endpoint. The resource's own client cannot serve: the
    resource makes it (de)serialise plain Python values, and the adapters speak DynamoDB's
    attribute values."""
    import boto3

    meta = table.meta.client.meta
    client = boto3.client("dynamodb", region_name=meta.region_name, endpoint_url=meta.endpoint_url, config=aws_config())
    return table.name, client


def _unix_clock_as_datetime(clock: Callable[[], float]) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(clock(), UTC)


def _given_or[P](given: P | None, build: Callable[[], P]) -> P:
    """`given` (a test's, the bench's), else what `build` makes (its client made only then)."""
    return build() if given is None else given


def _client_once(given: Any, service: str, *, attempts: int = AWS_ATTEMPTS) -> Callable[[], Any]:
    """The given client, or one made on first use and shared by the adapters built after."""
    made: list[Any] = [] if given is None else [given]

    def client() -> Any:
        if not made:
            made.append(aws_client(service, attempts=attempts))
        return made[0]

    return client


# --- the functions' services -----------------------------------------------------------------


def ingest_service(
    settings: IngestSettings,
    *,
    dynamodb: DynamoDBClient | None = None,
    affiliates: AffiliateStore | None = None,
    conversions: ConversionLog | None = None,
    clock: Callable[[], float] = time.time,
) -> IngestService:
    """The ingest function's service. `clock` (Unix seconds) dates the conversions and ages
    the affiliate cache; `affiliates` is wrapped in the cache either way."""
    from postback_relay.adapters.dynamodb_affiliates import CachedAffiliateStore
    from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog
    from postback_relay.services.ingest import IngestService

    now = _unix_clock_as_datetime(clock)
    client = _client_once(dynamodb, "dynamodb", attempts=INGEST_AWS_ATTEMPTS)
    store = _given_or(
        affiliates,
        lambda: affiliate_store(settings.affiliates_table, dynamodb=client(), allow_loopback=settings.allow_loopback),
    )
    return IngestService(
        CachedAffiliateStore(store, ttl_s=settings.config_cache_seconds, clock=lambda: clock()),
        _given_or(conversions, lambda: DynamoConversionLog(settings.conversions_table, client=client(), clock=now)),
        clock=now,
        allow_loopback=settings.allow_loopback,
    )


def dispatcher(
    settings: DispatchSettings,
    *,
    dynamodb: DynamoDBClient | None = None,
    sns: SNSClient | None = None,
    sqs: SQSClient | None = None,
    deliveries: DispatchDeliveryLog | None = None,
    sender: PostbackSender | None = None,
    retries: RetryControl | None = None,
    endpoints: EndpointStore | None = None,
    notifier: Notifier | None = None,
    notices: bool = True,
    affiliates: AffiliateStore | None = None,
    record_budget_s: float = AWS_CALL_BUDGET_S,
) -> Dispatcher:
    """The dispatch function's service; each adapter not given is built on AWS. With
    `notices=False` and no `notifier`, circuit changes are not announced (the bench).
    `record_budget_s`: the longest a record write takes (one AWS call on the budget; a test
    slowing AWS down gives its own)."""
    from postback_relay.adapters.dynamodb_affiliates import CachedAffiliateStore
    from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog
    from postback_relay.adapters.sns_notifier import NOTICE_ATTEMPTS, SnsNotifier
    from postback_relay.adapters.sqs_retry import SqsRetryControl
    from postback_relay.services.circuit import CircuitBreakers
    from postback_relay.services.dispatch import Dispatcher
    from postback_relay.services.waits import Waits

    client = _client_once(dynamodb, "dynamodb")
    if notifier is None and notices:
        notifier = SnsNotifier(settings.alarm_topic_arn, client=sns or aws_client("sns", attempts=NOTICE_ATTEMPTS))
    store = _given_or(endpoints, lambda: endpoint_directory(settings.endpoints_table, dynamodb=client()))
    queue = _given_or(
        retries,
        lambda: SqsRetryControl(
            settings.postback_queue_url, settings.dead_letter_queue_url, client=sqs or aws_client("sqs")
        ),
    )
    return Dispatcher(
        deliveries=_given_or(
            deliveries,
            lambda: DynamoDeliveryLog(settings.deliveries_table, client=client(), ttl_days=settings.delivery_ttl_days),
        ),
        sender=_given_or(sender, lambda: postback_sender(settings, pool_size=settings.max_workers)),
        retries=queue,
        breakers=CircuitBreakers(store, notifier=notifier, scale=settings.delay_scale),
        affiliates=_given_or(
            affiliates,
            lambda: CachedAffiliateStore(
                affiliate_store(settings.affiliates_table, dynamodb=client(), allow_loopback=settings.allow_loopback),
                ttl_s=settings.config_cache_seconds,
            ),
        ),
        max_workers=settings.max_workers,
        delay_scale=settings.delay_scale,
        send_budget_s=settings.connect_timeout_s + settings.read_timeout_s,
        record_budget_s=record_budget_s,
        waits=Waits(retries=queue, delay_scale=settings.delay_scale),
    )


def postback_sender(settings: DispatchSettings, *, pool_size: int) -> PostbackSender:
    """The dispatcher's HTTP sender: SSRF-safe, with the settings' timeouts."""
    from postback_relay.adapters.http_sender import HttpPostbackSender, SafeHttpClient

    client = SafeHttpClient(
        settings.connect_timeout_s, settings.read_timeout_s, settings.allow_loopback, pool_size=pool_size
    )
    return HttpPostbackSender(client)


def link_test_service(
    settings: TestLinkSettings, *, dynamodb: DynamoDBClient | None = None, sqs: SQSClient | None = None
) -> TestLinkService:
    """The test-link function's service."""
    from postback_relay.adapters.http_sender import SafeHttpClient
    from postback_relay.services.testlink import TestLinkService

    dynamodb = dynamodb or aws_client("dynamodb")
    return TestLinkService(
        runs=run_records(settings.test_runs_table, dynamodb=dynamodb),
        affiliates=affiliate_store(
            settings.affiliates_table, dynamodb=dynamodb, allow_loopback=settings.allow_loopback, consistent_read=True
        ),
        queue=postback_queue(settings.postback_queue_url, sqs=sqs),
        deliveries=delivery_log(settings.deliveries_table, dynamodb=dynamodb),
        http=SafeHttpClient(settings.connect_timeout_s, settings.read_timeout_s, settings.allow_loopback),
        network_hosts=settings.network_link_hosts,
        allow_loopback=settings.allow_loopback,
        max_hops=settings.max_hops,
    )


def outbox_service(
    settings: OutboxSettings,
    *,
    sqs: SQSClient | None = None,
    queue: PostbackQueue | None = None,
    parking: ParkedRecords | None = None,
) -> OutboxService:
    """The outbox function's service: the postback queue, and the queue unreadable records are
    parked on (one SQS client for both)."""
    from postback_relay.services.outbox import OutboxService

    client = _client_once(sqs, "sqs")
    return OutboxService(
        _given_or(queue, lambda: postback_queue(settings.postback_queue_url, sqs=client())),
        _given_or(parking, lambda: parked_records(settings.outbox_parked_queue_url, sqs=client())),
    )


def outbox_record_reader() -> Callable[[Mapping[str, Any]], OutboxRecord]:
    """How the outbox function reads a record of ConversionsTable's stream (the adapter's
    translation of its new image into an OutboxRecord)."""
    from postback_relay.adapters.dynamodb_conversions import outbox_record_of

    return outbox_record_of


def portal_service(
    settings: PortalSettings,
    *,
    secret: Callable[[], bytes],
    dynamodb: DynamoDBClient | None = None,
    sqs: SQSClient | None = None,
    sfn: SFNClient | None = None,
    clock: Callable[[], float] = time.time,
) -> PortalService:
    """The portal function's service; `secret` gives the portal secret (cached by the caller)."""
    from postback_relay.services.portal import PortalService

    dynamodb = dynamodb or aws_client("dynamodb")
    portal = portal_store(settings.portal_table, dynamodb=dynamodb)
    runs = run_records(settings.test_runs_table, dynamodb=dynamodb)
    return PortalService(
        affiliates=affiliate_store(
            settings.affiliates_table, dynamodb=dynamodb, allow_loopback=settings.allow_loopback, consistent_read=True
        ),
        access=portal,
        changes=portal,
        deliveries=delivery_log(settings.deliveries_table, dynamodb=dynamodb),
        queue=postback_queue(settings.postback_queue_url, sqs=sqs),
        runs=runs,
        launcher=run_launcher(
            settings.test_runs_table, settings.test_link_state_machine_arn, dynamodb=dynamodb, sfn=sfn
        ),
        endpoints=endpoint_directory(settings.endpoints_table, dynamodb=dynamodb),
        secret=secret,
        clock=_unix_clock_as_datetime(clock),
        schedule=lambda: run_schedule(settings.delay_scale, settings.test_deadline_s),
        allow_loopback=settings.allow_loopback,
    )


def run_schedule(delay_scale: float, deadline_s: int | None = None) -> tuple[list[int], int]:
    """A test run's waits times the stack's delay scale (never below a second each), and its
    deadline: the one given (the local stack's, from its floors), else 35 minutes scaled."""
    import math

    from postback_relay.domain.testrun import DEFAULT_DEADLINE_S, DEFAULT_WAITS_S

    if delay_scale == 1.0:
        return list(DEFAULT_WAITS_S), deadline_s or DEFAULT_DEADLINE_S
    waits = [max(1, math.ceil(wait * delay_scale)) for wait in DEFAULT_WAITS_S]
    return waits, deadline_s or max(1, math.ceil(DEFAULT_DEADLINE_S * delay_scale))


# --- adapters over a stack's tables and queues (the config script, tests, the bench) -----------


def postback_queue(queue_url: str, *, sqs: SQSClient | None = None) -> PostbackQueue:
    from postback_relay.adapters.sqs_queue import SqsPostbackQueue

    return SqsPostbackQueue(queue_url, client=sqs or aws_client("sqs"))


def parked_records(queue_url: str, *, sqs: SQSClient | None = None) -> ParkedRecords:
    """The queue the outbox parks the records it cannot read on (the outbox, `postback outbox`)."""
    from postback_relay.adapters.sqs_parked import SqsParkedRecords

    return SqsParkedRecords(queue_url, client=sqs or aws_client("sqs"))


def affiliate_store(
    table: str, *, dynamodb: DynamoDBClient | None = None, allow_loopback: bool = False, consistent_read: bool = False
) -> AffiliateStore:
    """The affiliate configs, uncached: what the config script writes through (consistent reads,
    so that `put` compares against the version it just read)."""
    from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore

    return DynamoAffiliateStore(
        table, client=dynamodb or aws_client("dynamodb"), allow_loopback=allow_loopback, consistent_read=consistent_read
    )


def delivery_log(table: str, *, dynamodb: DynamoDBClient | None = None) -> DeliveryLog:
    """The delivery log (DeliveriesTable)."""
    from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog

    return DynamoDeliveryLog(table, client=dynamodb or aws_client("dynamodb"))


def kept_postbacks(conversions_table: str, *, dynamodb: DynamoDBClient | None = None) -> KeptPostbacks:
    """Where a transaction's postbacks are logged, as its conversion records keep them."""
    from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog

    return DynamoConversionLog(conversions_table, client=dynamodb or aws_client("dynamodb"))


def run_records(test_runs_table: str, *, dynamodb: DynamoDBClient | None = None) -> TestRunStore:
    """The test runs' records (TestRunsTable)."""
    from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore

    return DynamoTestRunStore(test_runs_table, client=dynamodb or aws_client("dynamodb"))


def delivery_lookup(
    deliveries_table: str,
    *,
    conversions_table: str,
    test_runs_table: str,
    dynamodb: DynamoDBClient | None = None,
) -> DeliveryLookup:
    """Finds a transaction's postbacks: through its conversion records (ConversionsTable) or its
    test run (TestRunsTable), in the delivery log."""
    from postback_relay.services.lookup import DeliveryLookup

    client = dynamodb or aws_client("dynamodb")
    return DeliveryLookup(
        delivery_log(deliveries_table, dynamodb=client),
        kept_postbacks(conversions_table, dynamodb=client),
        run_records(test_runs_table, dynamodb=client),
    )


def link_workflow(state_machine_arn: str, *, sfn: SFNClient | None = None) -> TestWorkflow:
    """The test-link workflow (Step Functions): one execution per run."""
    from postback_relay.adapters.sfn_runner import SfnTestWorkflow

    return SfnTestWorkflow(state_machine_arn, client=sfn or aws_client("stepfunctions"))


def run_launcher(
    test_runs_table: str,
    state_machine_arn: str,
    *,
    dynamodb: DynamoDBClient | None = None,
    sfn: SFNClient | None = None,
) -> TestRunStarter:
    """Starts test-link runs on the state machine, each recorded in its table first (the portal)."""
    from postback_relay.services.testlink.runs import TestRunStarter

    return TestRunStarter(link_workflow(state_machine_arn, sfn=sfn), run_records(test_runs_table, dynamodb=dynamodb))


def run_starter(
    test_runs_table: str,
    state_machine_arn: str,
    *,
    dynamodb: DynamoDBClient | None = None,
    sfn: SFNClient | None = None,
) -> TestRunTracker:
    """Starts test-link runs and reads them back, reconciled with their executions (the CLI)."""
    from postback_relay.services.testlink.tracker import TestRunTracker

    return TestRunTracker(link_workflow(state_machine_arn, sfn=sfn), run_records(test_runs_table, dynamodb=dynamodb))


def endpoint_directory(table: str, *, dynamodb: DynamoDBClient | None = None) -> DynamoEndpointStore:
    """The circuit breaker state per affiliate endpoint."""
    from postback_relay.adapters.dynamodb_endpoints import DynamoEndpointStore

    return DynamoEndpointStore(table, client=dynamodb or aws_client("dynamodb"))


def portal_store(table: str, *, dynamodb: DynamoDBClient | None = None) -> DynamoPortalStore:
    """The portal's links and epochs, the changes waiting for ops and the change history."""
    from postback_relay.adapters.dynamodb_portal import DynamoPortalStore

    return DynamoPortalStore(table, client=dynamodb or aws_client("dynamodb"))
