"""The one render path: a conversion and an affiliate's config -> the postback messages it fires.

Ingest (what it records and queues), the test link's fire step, `postback preview` and the
portal's live preview all call `postback_messages`, so that what a person is shown is, byte
for byte, what ingest would queue, and a URL ingest would refuse is refused everywhere with
the same reason: a macro without a value, a URL that may not be called (checked on the
rendered URL, as dispatch checks it again after DNS), a message larger than MAX_MESSAGE_BYTES.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime

from postback_relay.domain.addresses import check_url
from postback_relay.domain.config import AffiliateConfig, PostbackSpec
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.delivery import PostbackMessage, postback_message
from postback_relay.domain.errors import ConfigError, PostbackRefused, UnsafeUrlError
from postback_relay.domain.render import macro_values, render_postback

# One postback message, as JSON, at most: 20 postbacks (a config's limit) stay far under
# DynamoDB's 400 KB item, and a SendMessageBatch of 10 under SQS's 256 KB. A tracker value
# repeated in a URL template can render longer: that conversion fires nothing, and says why.
MAX_MESSAGE_BYTES = 16384
TOO_LARGE = "postback_too_large"


def postback_messages(
    conversion: Conversion,
    config: AffiliateConfig,
    tracker_values: Mapping[str, str],
    *,
    created_at: datetime,
    allow_loopback: bool = False,
    postbacks: Sequence[tuple[int, PostbackSpec]] | None = None,
    test_run_id: str | None = None,
) -> list[PostbackMessage]:
    """The messages of the postbacks this conversion fires (`postbacks`: those given, with their
    index in the config; default: those subscribed to its event and offer), rendered with the
    conversion's and its tracker's values.

    Raises PostbackRefused for the first one that cannot be sent: then none is.
    """
    chosen = config.postbacks_for(conversion.event, conversion.offer_id) if postbacks is None else postbacks
    values = macro_values(conversion, config.affiliate_id, tracker_values)
    return [
        _message(conversion, config, index, spec, values, created_at, allow_loopback, test_run_id)
        for index, spec in chosen
    ]


def _message(
    conversion: Conversion,
    config: AffiliateConfig,
    index: int,
    spec: PostbackSpec,
    values: Mapping[str, str],
    created_at: datetime,
    allow_loopback: bool,
    test_run_id: str | None,
) -> PostbackMessage:
    try:
        rendered = render_postback(spec, values)
    except ConfigError as exc:
        # Saved configs name only known macros; this guards a config saved by older rules.
        raise PostbackRefused(
            f"Postback {index + 1} cannot be rendered: {exc.message}", kind=ConfigError.kind, index=index
        ) from exc
    try:
        check_url(rendered.url, allow_loopback=allow_loopback)
    except UnsafeUrlError as exc:
        raise PostbackRefused(
            f"Postback {index + 1} renders to a URL that may not be called: {exc.message}",
            kind=UnsafeUrlError.kind,
            index=index,
        ) from exc
    message = postback_message(
        conversion, config, index, spec, rendered, created_at=created_at, test_run_id=test_run_id
    )
    size = len(message.model_dump_json().encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise PostbackRefused(
            f"Postback {index + 1} renders to {size} bytes, more than {MAX_MESSAGE_BYTES}: "
            "a tracker value is too long for its URL template.",
            kind=TOO_LARGE,
            index=index,
        )
    return message
