"""The macro registry: the names a config may use and their values come from one table."""

from typing import Any

import pytest

from postback_relay.domain.config import BUILTIN_MACROS, parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.macros import MACROS
from postback_relay.domain.render import macro_values, render_url

WITH_MONEY: dict[str, Any] = {
    "transaction_id": "T-2026-000123",
    "event": "sale",
    "offer": {"id": "89", "type": "revshare", "name": "Dating FR"},
    "amount": "25.00",
    "currency": "EUR",
    "link": "http://www.espace-plus.net/r.php?id=1234567&tracker=trID_a1-T9-c123-x_trID",
    "occurred_at": "2026-11-25T12:00:00Z",
}
# A free registration: no money, no offer name.
WITHOUT_MONEY: dict[str, Any] = {
    **{key: value for key, value in WITH_MONEY.items() if key not in ("amount", "currency")},
    "event": "registration",
    "offer": {"id": "89", "type": "pps"},
}


@pytest.mark.parametrize("name", sorted(MACROS))
@pytest.mark.parametrize("data", [WITH_MONEY, WITHOUT_MONEY], ids=["sale", "registration-without-money"])
def test_every_registered_macro_is_allowed_and_has_a_value(name: str, data: dict[str, Any]) -> None:
    # GIVEN a config whose postback uses one registered macro, and a conversion
    config = parse_config(
        {
            "affiliate_id": "1234567",
            "name": "Acme",
            "tracker": {"fields": ["affid", "transid", "clickid", "whateverid"]},
            "postbacks": [{"events": [data["event"]], "url": f"https://track.example/pb?v={{{name}}}"}],
        }
    )
    # WHEN the conversion's macro values are computed and the postback URL rendered
    values = macro_values(Conversion.model_validate(data), "1234567", {})
    url = render_url(config.postbacks[0].url, values)
    # THEN the name is allowed, it has a text value, and the URL carries it
    assert name in BUILTIN_MACROS
    assert isinstance(values[name], str)
    assert url.startswith("https://track.example/pb?v=")
    assert "{" not in url
