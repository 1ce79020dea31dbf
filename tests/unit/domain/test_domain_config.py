"""Affiliate configs: loading YAML or JSON, and refusing every bad field with its path and reason."""

import json
from typing import Any

import pytest

from postback_relay.domain.config import (
    BUILTIN_MACROS,
    AffiliateConfig,
    HttpMethod,
    dump_config,
    load_config_text,
    parse_config,
)
from postback_relay.domain.errors import ConfigError
from postback_relay.domain.events import Event

CONTRACT_YAML = """
affiliate_id: "1234567"          # the affiliate's ID on the network
name: Acme Media
tracker:
  fields: [affid, transid, clickid, whateverid]   # order of the values inside trID_..._trID
  separator: "-"
  rest: clickid                  # optional: this field takes what is left, separators included
postbacks:
  - events: [sale, rebill]
    url: "https://track.acme.example/postback?cid={clickid}&payout={amount}&cur={currency}&ev={event}&offer={offer_id}"
  - events: [registration]
    url: "https://track.acme.example/lead?cid={clickid}&offer={offer_id}"
    offers: ["89", "90"]          # optional filter; default: every offer
test_link: "https://track.acme.example/click?camp=42"
"""
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes of base64


def config_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "affiliate_id": "1234567",
        "name": "Acme Media",
        "postbacks": [{"events": ["sale"], "url": "https://track.acme.example/pb?cid={clickid}&amount={amount}"}],
    }
    data.update(changes)
    return data


def postback(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"events": ["sale"], "url": "https://track.acme.example/pb?cid={clickid}"}
    spec.update(changes)
    return spec


def refusal(data: dict[str, Any], *, allow_loopback: bool = False) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, allow_loopback=allow_loopback)
    return caught.value


def test_contract_example_loads() -> None:
    # GIVEN the contract's example YAML file
    # WHEN it is loaded
    config = load_config_text(CONTRACT_YAML)
    # THEN every part of it is read, with the defaults for what it leaves out
    assert config.affiliate_id == "1234567"
    assert config.enabled is True
    assert config.tracker.rest == "clickid"
    assert config.postbacks[0].events == (Event.SALE, Event.REBILL)
    assert config.postbacks[0].method is HttpMethod.GET
    assert config.postbacks[1].offers == ("89", "90")
    assert config.postbacks_for(Event.REGISTRATION, "91") == []
    assert [i for i, _ in config.postbacks_for(Event.REGISTRATION, "89")] == [1]


def test_json_and_yaml_give_the_same_config() -> None:
    # GIVEN the contract's config and its JSON dump
    config = load_config_text(CONTRACT_YAML)
    text = json.dumps(dump_config(config))
    # WHEN the JSON is loaded
    # THEN it is the same config
    assert load_config_text(text) == config


def test_dump_config_round_trips_every_field() -> None:
    # GIVEN a config using every optional field
    data = config_data(
        enabled=False,
        signing_secret=SECRET,
        tracker={"fields": ["cid", "sub"], "separator": "__", "rest": "cid"},
        postbacks=[
            postback(
                url="https://track.acme.example/pb/{cid}",
                method="post",
                body='{"cid": "{cid}", "amount": "{amount}"}',
                content_type="application/json",
                expect={"status": [200, 204], "body_contains": "ok"},
                offers=["89"],
            )
        ],
    )
    config = parse_config(data)
    # WHEN it is dumped and read back
    # THEN nothing is lost
    assert parse_config(dump_config(config)) == config


def test_unquoted_yaml_numbers_are_read_as_ids() -> None:
    # GIVEN YAML with the affiliate ID and offer IDs unquoted, and single values instead of lists
    text = """
affiliate_id: 1234567
name: Acme
postbacks:
  - events: sale
    url: "https://track.acme.example/pb?cid={clickid}"
    offers: [89, 90]
    expect: {status: 200}
"""
    # WHEN it is loaded
    config = load_config_text(text)
    # THEN the IDs are text and single values are lists
    assert config.affiliate_id == "1234567"
    assert config.postbacks[0].offers == ("89", "90")
    assert config.postbacks[0].events == (Event.SALE,)
    assert config.postbacks[0].expect is not None
    assert config.postbacks[0].expect.status == (200,)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (
            config_data(postbacks=[postback(url="https://x.example/pb?c={click}")]),
            "postbacks.0.url",
            "unknown macro {click}",
        ),
        (
            config_data(postbacks=[postback(), postback(method="POST", body="c={nope}")]),
            "postbacks.1.body",
            "unknown macro {nope}",
        ),
        (config_data(postbacks=[postback(url="https://{clickid}.x.example/")]), "postbacks.0.url", "host"),
        (config_data(postbacks=[postback(url="{event}://x.example/")]), "postbacks.0.url", "scheme"),
        (config_data(postbacks=[postback(url="https://x.example:{clickid}/")]), "postbacks.0.url", "port"),
        (config_data(postbacks=[postback(url="https://x.example/?{clickid}=1")]), "postbacks.0.url", "parameter name"),
        (config_data(postbacks=[postback(url="https://x.example/?a={clickid")]), "postbacks.0.url", "'{' or '}'"),
        (config_data(postbacks=[postback(url="http://127.0.0.1/pb")]), "postbacks.0.url", "loopback"),
        (config_data(postbacks=[postback(url="http://2130706433/pb")]), "postbacks.0.url", "loopback"),
        (config_data(postbacks=[postback(url="http://169.254.169.254/pb")]), "postbacks.0.url", "link-local"),
        (config_data(postbacks=[postback(url="ftp://x.example/pb")]), "postbacks.0.url", "http and https"),
        (config_data(postbacks=[postback(url="x.example/pb")]), "postbacks.0.url", "http://"),
        (config_data(postbacks=[postback(events=["purchase"])]), "postbacks.0.events.0", "registration"),
        (config_data(postbacks=[postback(events=[])]), "postbacks.0.events", "at least one event is needed"),
        (config_data(postbacks=[postback(events=["sale", "sale"])]), "postbacks.0.events", "twice"),
        (config_data(postbacks=[postback(offers=[])]), "postbacks.0.offers", "leave offers out"),
        (config_data(postbacks=[postback(method="PUT")]), "postbacks.0.method", "GET"),
        (config_data(postbacks=[postback(body="a=1")]), "postbacks.0.body", "GET postback has no body"),
        (
            config_data(postbacks=[postback(method="POST", content_type="text/xml")]),
            "postbacks.0.content_type",
            "application/json",
        ),
        (
            config_data(postbacks=[postback(method="POST", content_type="application/json", body='{"a": {amount}}')]),
            "postbacks.0.body",
            "outside a JSON string",
        ),
        (
            config_data(
                postbacks=[postback(method="POST", content_type="application/json", body='{"{clickid}": "1"}')]
            ),
            "postbacks.0.body",
            "JSON key",
        ),
        (config_data(postbacks=[postback(method="POST", body="{clickid}=1")]), "postbacks.0.body", "form field name"),
        (config_data(postbacks=[postback(expect={"status": [700]})]), "postbacks.0.expect.status", "700"),
        (config_data(postbacks=[postback(extra=1)]), "postbacks.0.extra", "unknown key `extra` (known keys: events"),
        (config_data(postbacks=[]), "postbacks", "at least one postback is needed"),
        (config_data(tracker={"fields": ["a", "a"]}), "tracker.fields", "twice"),
        (config_data(tracker={"fields": ["a"], "rest": "b"}), "tracker", "not one of the fields"),
        (config_data(tracker={"separator": ""}), "tracker.separator", "empty"),
        (config_data(tracker={"fields": ["amount", "cid"]}), "tracker.fields", "clash with built-in"),
        (config_data(affiliate_id="12_34"), "affiliate_id", "'_'"),
        (config_data(affiliate_id=""), "affiliate_id", "cannot be empty"),
        (config_data(name="   "), "name", "blank"),
        (config_data(test_link="http://10.0.0.1/click"), "test_link", "private"),
        (config_data(signing_secret="not base64 at all !!!!!!!!"), "signing_secret", "whsec_"),
        (config_data(signing_secret="whsec_" + "QUFB" * 6), "signing_secret", "18 bytes"),
    ],
)
def test_refusals_name_the_field_and_the_reason(data: dict[str, Any], field: str, words: str) -> None:
    # GIVEN a config with one bad field
    # WHEN it is validated
    error = refusal(data)
    # THEN the error names the field by its dotted path and says why
    assert error.field == field, error.errors
    assert words in error.reason


def test_every_problem_is_reported() -> None:
    # GIVEN a config with problems in separate fields
    data = config_data(
        test_link="http://192.168.0.1/",
        postbacks=[postback(url="https://x.example/?c={nope}"), postback(url="http://10.1.2.3/")],
    )
    # WHEN it is validated
    error = refusal(data)
    # THEN all of them are listed
    fields = [field for field, _ in error.errors]
    assert fields == ["postbacks.1.url", "test_link"]


def test_unknown_macros_of_several_postbacks_are_all_reported() -> None:
    # GIVEN two postbacks with unknown macros
    data = config_data(postbacks=[postback(url="https://x.example/?c={a}"), postback(url="https://x.example/?c={b}")])
    # WHEN it is validated
    error = refusal(data)
    # THEN each is named
    assert [field for field, _ in error.errors] == ["postbacks.0.url", "postbacks.1.url"]


def test_tracker_fields_and_every_builtin_are_valid_macros() -> None:
    # GIVEN a postback using a custom tracker field and every built-in macro
    query = "&".join(f"{name}={{{name}}}" for name in sorted(BUILTIN_MACROS))
    data = config_data(tracker={"fields": ["cid"]}, postbacks=[postback(url=f"https://x.example/pb/{{cid}}?{query}")])
    # WHEN it is validated
    config = parse_config(data)
    # THEN it is accepted
    assert config.macros == BUILTIN_MACROS | {"cid"}


def test_macros_in_path_segments_and_query_values_are_accepted() -> None:
    # GIVEN macros in the path and in query values
    data = config_data(
        postbacks=[postback(url="https://x.example/pb/{clickid}/{event}?v={amount}{currency}#{offer_id}")]
    )
    # WHEN it is validated
    # THEN it is accepted
    assert parse_config(data).postbacks[0].url.startswith("https://x.example/pb/")


def test_loopback_is_allowed_only_with_the_context_flag() -> None:
    # GIVEN a postback and a test link on loopback
    data = config_data(
        postbacks=[postback(url="http://127.0.0.1:8080/pb?cid={clickid}")], test_link="http://localhost:9/c"
    )
    # WHEN it is validated for the local stack, then for a deployed one
    config = parse_config(data, allow_loopback=True)
    error = refusal(data)
    # THEN only the local stack accepts it
    assert config.postbacks[0].url.startswith("http://127.0.0.1")
    assert error.field == "postbacks.0.url"


def test_model_validate_reads_allow_loopback_from_the_context() -> None:
    # GIVEN a loopback config validated directly with pydantic
    data = config_data(postbacks=[postback(url="http://127.0.0.1:8080/pb?cid={clickid}")])
    # WHEN the context allows loopback
    config = AffiliateConfig.model_validate(data, context={"allow_loopback": True})
    # THEN it is accepted
    assert config.affiliate_id == "1234567"


def test_allow_loopback_does_not_allow_private_addresses() -> None:
    # GIVEN a private postback URL
    data = config_data(postbacks=[postback(url="http://10.0.0.5/pb")])
    # WHEN validated for the local stack
    # THEN it is still refused
    assert refusal(data, allow_loopback=True).field == "postbacks.0.url"


def test_post_defaults_to_form_and_accepts_json_with_charset() -> None:
    # GIVEN POST postbacks, one form (default content type) and one JSON with a charset
    data = config_data(
        postbacks=[
            postback(method="POST", body="cid={clickid}&amount={amount}"),
            postback(method="POST", content_type="application/json; charset=utf-8", body='{"cid": "{clickid}"}'),
        ]
    )
    # WHEN validated
    config = parse_config(data)
    # THEN both are accepted
    assert [p.method for p in config.postbacks] == [HttpMethod.POST, HttpMethod.POST]


def test_signing_secret_without_prefix_is_accepted() -> None:
    # GIVEN a base64 secret without the whsec_ prefix
    data = config_data(signing_secret=SECRET.removeprefix("whsec_"))
    # WHEN validated
    # THEN it is accepted
    assert parse_config(data).signing_secret == SECRET.removeprefix("whsec_")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("{", "neither valid JSON nor valid YAML"),
        ("a: [1\n", "neither valid JSON nor valid YAML"),
        ("a: &x [1]\nb: *x\n", "aliases"),
        ("affiliate_id: '1'\naffiliate_id: '2'\n", "appears twice"),
        ('{"affiliate_id": "1", "affiliate_id": "2"}', "appears twice"),
        ("- 1\n- 2\n", "mapping"),
        ("just text", "mapping"),
        ("x" * 70000, "longer than"),
    ],
)
def test_unreadable_files_are_refused(text: str, words: str) -> None:
    # GIVEN a file that is not a readable config
    # WHEN it is loaded
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    # THEN the error says why
    assert words in caught.value.reason


def test_config_error_lists_all_problems_in_its_message() -> None:
    # GIVEN a config with two bad fields
    data = config_data(affiliate_id="a_b", name="")
    # WHEN validated
    error = refusal(data)
    # THEN the message shows both, and field/reason are the first
    assert (error.field, len(error.errors)) == ("affiliate_id", 2)
    assert "affiliate_id:" in str(error)
    assert "name:" in str(error)


def test_config_module_does_not_import_yaml() -> None:
    # GIVEN a fresh interpreter (the Lambda layer has no PyYAML)
    import subprocess
    import sys

    code = (
        "import sys; import postback_relay.domain.config as c; "
        'c.load_config_text(\'{"affiliate_id": "1", "name": "n", "postbacks": '
        '[{"events": ["sale"], "url": "https://x.example/"}]}\'); '
        "print('yaml' in sys.modules)"
    )
    # WHEN the config module is imported and loads a JSON config
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    # THEN PyYAML was never imported
    assert result.stdout.strip() == "False"


def test_every_problem_of_a_config_comes_in_one_answer_with_hints_in_words() -> None:
    # GIVEN a config with an unknown key, two unknown macros in one URL, one in another postback,
    # and a URL that may not be called
    data = {
        "affiliate_id": "1234567",
        "name": "Acme",
        "bogus": 1,
        "tracker": {"fields": ["affid", "transid", "clickid", "whateverid"], "separator": "-"},
        "postbacks": [
            {"events": ["sale"], "url": "https://a.example/p?c={nope}&d={nada}"},
            {"events": ["rebill"], "url": "https://a.example/r?c={clikid}"},
            {"events": ["trial"], "url": "ftp://a.example/t"},
        ],
    }
    # WHEN it is validated
    with pytest.raises(ConfigError) as refused:
        parse_config(data)
    problems = dict(refused.value.errors)
    # THEN every problem is named at once: the key, each bad macro, the bad URL
    assert set(problems) == {"bogus", "postbacks.0.url", "postbacks.1.url", "postbacks.2.url"}
    assert "{nope}, {nada}" in problems["postbacks.0.url"]
    assert "{clikid}" in problems["postbacks.1.url"]
    # AND the hints are words, not Python lists
    assert (
        "use the tracker fields affid, transid, clickid, whateverid or the built-in macros"
        in (problems["postbacks.0.url"])
    )
    assert not any("['" in reason for reason in problems.values()), problems
