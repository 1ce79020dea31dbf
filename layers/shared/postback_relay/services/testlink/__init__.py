"""The test-link run (contract section 5): `TestLinkService` and its steps' helpers.

- `service`: `TestLinkService`, one method per step of the workflow, and their answers.
- `link`: following the test link's redirects (step 1), reading its tracker (step 2).
- `postbacks`: the test postbacks the fire step queues (step 3).
- `deliveries`: their states, the verdict and its sentences (step 4).
"""

from postback_relay.domain.testrun import next_wait_s
from postback_relay.services.testlink.link import FollowOutcome, Hop, follow_redirects, offer_type_of
from postback_relay.services.testlink.service import DeliveryCheck, FollowResult, TestLinkService, TrackerResult

__all__ = [
    "DeliveryCheck",
    "FollowOutcome",
    "FollowResult",
    "Hop",
    "TestLinkService",
    "TrackerResult",
    "follow_redirects",
    "next_wait_s",
    "offer_type_of",
]
