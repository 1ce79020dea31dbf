"""The macro registry: the names a config may use and their values come from one table."""

import pytest
from fakes import ingest_conversion

from postback_relay.domain.config import BUILTIN_MACROS, parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.macros import MACROS
from postback_relay.domain.render import macro_values, render_url

SALE = ingest_conversion()  # the contract's sample: money, an offer name
# A free registration: no money, no offer name.
REGISTRATION = ingest_conversion(event="registration", amount=None, currency=None, offer={"id": "89", "type": "pps"})


@pytest.mark.parametrize("name", sorted(MACROS))
@pytest.mark.parametrize("conversion", [SALE, REGISTRATION], ids=["sale", "registration-without-money"])
def test_every_registered_macro_is_allowed_and_has_a_value(name: str, conversion: Conversion) -> None:
    # GIVEN a config whose postback uses one registered macro, and a conversion
    config = parse_config(
        {
            "affiliate_id": "1234567",
            "name": "Acme",
            "tracker": {"fields": ["affid", "transid", "clickid", "whateverid"]},
            "postbacks": [{"events": [conversion.event.value], "url": f"https://track.example/pb?v={{{name}}}"}],
        }
    )
    # WHEN the conversion's macro values are computed and the postback URL rendered
    values = macro_values(conversion, "1234567", {})
    url = render_url(config.postbacks[0].url, values)
    # THEN the name is allowed, it has a text value, and the URL carries it
    assert name in BUILTIN_MACROS
    assert isinstance(values[name], str)
    assert url.startswith("https://track.example/pb?v=")
    assert "{" not in url
