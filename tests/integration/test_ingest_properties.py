"""Whatever the values, ingest answers 2xx or 4xx: a property-based walk of the conversion
model's whole input space (times at the edges of the calendar and of the offsets, huge and tiny
decimals, any Unicode, fields left out or added), each request signed and posted to the real
ingest handler on moto.

A 5xx is the relay's fault, never the caller's (contract section 2); the platform retries a 5xx
forever, so one value the relay cannot handle would block a whole batch for good.
"""

from __future__ import annotations

import json
from typing import Any

from fakes import ingest_conversion_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integration.test_ingest_handler import Api
from integration.test_ingest_handler import api as api  # the fixture: a fresh stack, affiliate 1234567

from postback_relay.domain.conversion import Conversion
from postback_relay.domain.events import Event, OfferType

EXAMPLES = 300
NUMBER = "__number__"  # a placeholder for a JSON number written as raw text

# --- times: each part of an RFC 3339 date-time, at and just beyond its range -----------------


def _two(n: int) -> str:
    return f"{n:02d}"


_EDGE_TIMES = st.sampled_from(
    [
        "0001-01-01T00:00:00+00:01",  # UTC instant in year 0
        "0001-01-01T00:00:00-23:59",
        "9999-12-31T23:59:59-23:59",  # UTC instant in year 10000
        "9999-12-31T23:59:59+23:59",
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2016-12-31T23:59:60Z",  # a real leap second
        "2026-11-25T24:00:00Z",
        "2026-11-25T12:00:00+24:00",
        "2026-11-25T12:00:00-00:60",
        "2026-02-29T12:00:00Z",
        "2024-02-29T12:00:00Z",
        "2026-11-25T12:00:00.1234567890123Z",
        "2026-11-25 12:00:00z",
        "2026-11-25T12:00:00+0100",
        "2026-11-25",
        "2026-11-25T12:00:00",
        "",
    ]
)
_OFFSETS = st.one_of(
    st.sampled_from(["Z", "z", ""]),
    st.tuples(st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61)).map(
        lambda p: f"{p[0]}{_two(p[1])}:{_two(p[2])}"
    ),
)
_COMPOSED_TIMES = st.builds(
    lambda year, month, day, hour, minute, second, fraction, offset: (
        f"{year:04d}-{_two(month)}-{_two(day)}T{_two(hour)}:{_two(minute)}:{_two(second)}{fraction}{offset}"
    ),
    st.integers(0, 10_000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 60),
    st.integers(0, 61),
    st.one_of(st.just(""), st.integers(0, 10**12).map(lambda n: f".{n}")),
    _OFFSETS,
)
TIMES = st.one_of(_EDGE_TIMES, _COMPOSED_TIMES, st.text(max_size=40))

# --- numbers, as JSON text: huge, tiny, negative, exponents, floats -------------------------

NUMBERS = st.one_of(
    st.sampled_from(["1e400", "1e-400", "-0", "0.0000001", "9" * 400, "1E+999999999", "25.00", "0"]),
    st.integers(-(10**40), 10**40).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
DECIMAL_TEXTS = st.one_of(NUMBERS, st.sampled_from(["25.00", "0.000001", "999999999999999.999999"]))
ANY_TEXT = st.text(max_size=80)  # every code point, lone surrogates included (sent as \\ud800)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), ANY_TEXT, NUMBERS.map(lambda n: (NUMBER, n)))

LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id={affiliate}&e=1&w=0"
    "&tracker=trID_{tracker}_trID"
)
LINKS = st.one_of(
    st.builds(
        lambda affiliate, tracker: LINK.format(affiliate=affiliate, tracker=tracker),
        st.one_of(st.just("1234567"), ANY_TEXT),
        st.one_of(st.just("a1-T9-c123-x"), ANY_TEXT),
    ),
    ANY_TEXT,
)


# Fields the model has that this walk does not know by name get any JSON value, so that a field
# added to Conversion is walked too.
_KNOWN = {"transaction_id", "event", "offer", "amount", "currency", "link", "tracker", "affiliate_id", "occurred_at"}
_OTHERS = sorted(set(Conversion.model_fields) - _KNOWN - {"amount_text"})
_NAMES = st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=30)


@st.composite
def conversions(draw: st.DrawFn) -> dict[str, Any]:
    """A conversion that is mostly plausible (so that many are taken and reach the store, the
    renderer and the outbox), with its time, its amount and its texts drawn from their whole
    range, and up to two fields replaced by any JSON value or left out."""
    event = draw(st.sampled_from([e.value for e in Event]))
    document: dict[str, Any] = {
        "transaction_id": draw(st.one_of(st.just("T-1"), _NAMES)),
        "event": event,
        "offer": draw(
            st.fixed_dictionaries(
                {"id": st.one_of(st.just("89"), _NAMES), "type": st.sampled_from([t.value for t in OfferType])},
                optional={"name": ANY_TEXT},
            )
        ),
        "amount": draw(st.one_of(DECIMAL_TEXTS.map(lambda n: (NUMBER, n)), DECIMAL_TEXTS)),
        "currency": draw(st.sampled_from(["EUR", "USD", "eur", "EURO"])),
        "link": draw(LINKS),
        "occurred_at": draw(TIMES),
    }
    if draw(st.booleans()):  # by tracker instead of link
        del document["link"]
        document["tracker"] = draw(st.sampled_from(["trID_1234567_a1-T9-c123-x_trID", "trID_a1-T9-c123-x_trID"]))
        document["affiliate_id"] = draw(st.sampled_from(["1234567", "7654321"]))
    for name in _OTHERS:
        if draw(st.booleans()):
            document[name] = draw(st.one_of(DECIMAL_TEXTS, DECIMAL_TEXTS.map(lambda n: (NUMBER, n)), ANY_TEXT))
    wild = draw(st.lists(st.sampled_from(sorted(_KNOWN | set(_OTHERS))), max_size=2, unique=True))
    for name in wild:
        document[name] = draw(JSON_SCALARS)
    left_out = draw(st.lists(st.sampled_from(sorted(document)), max_size=1))
    return {key: value for key, value in document.items() if key not in left_out}


def _json(value: Any) -> str:
    """JSON text, with a (NUMBER, text) pair written as the raw number text."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == NUMBER:
        return str(value[1])
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value)


BODIES = st.one_of(
    conversions().map(_json),
    st.lists(conversions(), min_size=1, max_size=3).map(lambda batch: _json({"conversions": batch})),
)


def test_no_conversion_value_gets_a_5xx(api: Api) -> None:
    statuses: set[int] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=BODIES)
    def posted(body: str) -> None:
        # WHEN a signed request with these values is posted to the ingest handler
        status, answer, _ = api.post_raw(body)
        statuses.add(status)
        # THEN a 2xx, or a 4xx that says what is wrong; never a 5xx (documented, checked by post_raw)
        assert status < 500, (status, answer, body[:1000])
        if status >= 400:
            assert answer["message"], answer

    # GIVEN affiliate 1234567 onboarded (the api fixture), so that valid values really record
    posted()

    # AND the walk reached both sides: some requests taken, some refused
    assert statuses & {200, 202}, statuses
    assert 400 in statuses, statuses


def test_a_time_outside_the_years_1_to_9999_in_utc_is_a_400_naming_occurred_at(api: Api) -> None:
    for moment in ("0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-23:59"):
        # WHEN a conversion whose UTC instant falls in year 0 or 10000 is posted, alone or in a batch
        single = api.post(ingest_conversion_data(occurred_at=moment))
        batch = api.post({"conversions": [ingest_conversion_data(transaction_id="T-ok"), single_data(moment)]})

        # THEN 400 naming occurred_at, saying why; nothing recorded
        for (status, answer, _), field in ((single, "occurred_at"), (batch, "conversions.1.occurred_at")):
            assert status == 400, answer
            (error,) = answer["errors"]
            assert error["field"] == field
            assert "outside the years 1 to 9999" in error["message"]
    assert api.records() == {}


def single_data(moment: str) -> dict[str, object]:
    return ingest_conversion_data(transaction_id="T-edge", occurred_at=moment)


def test_a_leap_second_an_hour_24_or_an_offset_of_24_hours_is_named_in_words(api: Api) -> None:
    cases = {
        "2016-12-31T23:59:60Z": "leap second",
        "2026-11-25T24:00:00Z": "hour 24",
        "2026-11-25T12:00:00+24:00": "offset +24:00",
    }
    for moment, said in cases.items():
        # WHEN such a time is posted
        status, answer, _ = api.post(ingest_conversion_data(occurred_at=moment))
        # THEN a 400 that names the part at fault, not the parser's "unexpected extra characters"
        assert status == 400
        (error,) = answer["errors"]
        assert error["field"] == "occurred_at"
        assert said in error["message"], error
        assert "extra characters" not in error["message"]
