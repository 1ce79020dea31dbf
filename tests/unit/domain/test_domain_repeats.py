"""A repeat with other content: which fields differ, by their digests."""

from fakes import ingest_conversion

from postback_relay.domain.conversion import Conversion
from postback_relay.domain.repeats import IDENTITY, content_digests, differing_fields


def differing(first: Conversion, again: Conversion) -> tuple[str, ...]:
    return differing_fields(content_digests(first), content_digests(again))


def test_the_same_content_differs_in_nothing_whatever_the_offset_of_the_same_instant() -> None:
    # GIVEN the sample sale, and the same sent with the instant written in another offset
    # THEN nothing differs
    assert differing(ingest_conversion(), ingest_conversion()) == ()
    assert differing(ingest_conversion(), ingest_conversion(occurred_at="2026-11-25T13:00:00+01:00")) == ()


def test_each_changed_field_is_named_and_the_amount_by_its_exact_text() -> None:
    # WHEN the amount is sent as 25.0 instead of 25.00 (it renders differently), the offer's name
    # changes and the tracker replaces the link
    again = ingest_conversion(
        amount="25.0",
        offer={"id": "89", "type": "revshare", "name": "Other"},
        link=None,
        tracker="trID_1234567_a1-T9-c123-x_trID",
        affiliate_id="1234567",
    )
    # THEN each is named, as people write them
    assert differing(ingest_conversion(), again) == ("affiliate_id", "amount", "link", "offer.name", "tracker")


def test_every_field_of_the_model_but_the_identity_is_compared() -> None:
    # GIVEN a conversion with every field filled
    conversion = ingest_conversion(offer={"id": "89", "type": "revshare", "name": "N"})
    names = {name.split(".")[0] for name in content_digests(conversion)}
    # THEN every model field with a value is compared (a field added later is, without a change)
    filled = {
        "amount" if name == "amount_text" else name
        for name, value in conversion.model_dump().items()
        if value not in (None, "")
    }
    assert names == filled - IDENTITY


def test_a_field_the_first_record_never_had_differs_only_when_the_repeat_sends_it() -> None:
    # GIVEN a record's digests from before a field existed
    first = content_digests(ingest_conversion())
    # THEN a repeat leaving that field out does not differ; one sending it does
    assert differing_fields(first, {**first}) == ()
    assert differing_fields(first, {**first, "payout": "abcd"}) == ("payout",)
