"""`postback affiliate put|get|list|disable|enable` and `export`, over in-memory backends."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path

from fakes.cli import OPS_ARN, FakeBackends
from typer.testing import CliRunner, Result

from postback_ops.cli import app
from postback_ops.target import Target, pinned
from postback_relay.domain.config import load_config_text

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "affiliates"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()

ACME = """\
affiliate_id: "1234567"
name: Acme Media
postbacks:
  - events: [sale, rebill]
    url: "https://track.acme.example/postback?cid={clickid}&payout={amount}"
"""


def write(tmp_path: Path, text: str, name: str = "acme.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def as_json(result: Result) -> object:
    return json.loads(result.stdout)


def test_put_creates_the_affiliate_with_the_callers_identity(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN a valid config file and an empty stack
    path = write(tmp_path, ACME)
    # WHEN ops put it
    result = postback("--json", "affiliate", "put", str(path))
    # THEN it is stored at version 1, by the caller
    assert result.exit_code == 0, result.stderr
    assert as_json(result) == {
        "affiliate_id": "1234567",
        "dry_run": False,
        "change": "create",
        "version": 1,
        "diff": as_json(result)["diff"],  # type: ignore[index]
        "takes_effect_within_s": 5,
    }
    stored = backends.affiliates.items["1234567"]
    assert stored.version == 1
    assert stored.updated_by == OPS_ARN
    assert stored.config.postbacks[0].url.startswith("https://track.acme.example/")


def test_put_says_when_a_new_or_changed_config_takes_effect(backends: FakeBackends, tmp_path: Path) -> None:
    # GIVEN a stack whose functions cache configs for 45 s
    runner = CliRunner()
    with pinned(Target.from_outputs({"ConfigCacheSeconds": "45"}, name="relay-prod")):
        # WHEN a new affiliate is put
        created = runner.invoke(app, ["affiliate", "put", str(write(tmp_path, ACME))])
        # THEN people read that its postbacks fire from its next conversion
        assert created.exit_code == 0, created.stderr
        assert "from its next conversion (within 5 s)" in created.stdout

        # WHEN its config is changed
        changed = write(tmp_path, ACME.replace("Acme Media", "Acme Media EU"), "acme-eu.yaml")
        human = runner.invoke(app, ["affiliate", "put", "--dry-run", str(changed)])
        updated = runner.invoke(app, ["--json", "affiliate", "put", str(changed)])

    # THEN people and scripts read that the change takes up to the cache time
    assert "would reach the relay within 45 s" in human.stdout
    assert updated.exit_code == 0, updated.stderr
    assert as_json(updated)["takes_effect_within_s"] == 45  # type: ignore[index]


def test_put_of_an_unchanged_config_writes_nothing(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN an affiliate already stored from this very file
    path = write(tmp_path, ACME)
    assert postback("affiliate", "put", str(path)).exit_code == 0
    # WHEN the same file is put again
    result = postback("--json", "affiliate", "put", str(path))
    # THEN nothing is written and the version stays
    assert result.exit_code == 0
    assert as_json(result)["change"] == "none"  # type: ignore[index]
    assert backends.affiliates.writes == 1
    assert backends.affiliates.items["1234567"].version == 1


def test_dry_run_shows_the_diff_and_writes_nothing(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN a stored affiliate and an edited file
    assert postback("affiliate", "put", str(write(tmp_path, ACME))).exit_code == 0
    edited = write(tmp_path, ACME.replace("payout={amount}", "payout={amount}&cur={currency}"), "edited.yaml")
    # WHEN ops ask for a dry run
    result = postback("affiliate", "put", str(edited), "--dry-run")
    # THEN the diff is shown (old line removed, new line added) and the store is untouched
    assert result.exit_code == 0, result.stderr
    assert "-  url: https://track.acme.example/postback?cid={clickid}&payout={amount}\n" in result.stdout
    assert "+  url: https://track.acme.example/postback?cid={clickid}&payout={amount}&cur={currency}\n" in result.stdout
    assert "nothing written" in result.stdout
    assert backends.affiliates.writes == 1
    assert "{currency}" not in backends.affiliates.items["1234567"].config.postbacks[0].url


def test_a_refused_config_exits_2_naming_every_field_and_reason(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN a config with an unknown event and an unknown macro
    text = ACME.replace("[sale, rebill]", "[sale, upsell]").replace("{amount}", "{amount}&x={commission}")
    # WHEN ops put it
    result = postback("affiliate", "put", str(write(tmp_path, text)))
    # THEN it exits 2, names each field with its reason, and writes nothing
    assert result.exit_code == 2
    words = "`upsell` is not one of registration, trial, sale, rebill, chargeback or refund"
    assert f"postback 1, event 2: {words}" in result.stderr
    assert backends.affiliates.writes == 0
    assert "Traceback" not in result.stderr


def test_an_unknown_macro_is_refused(postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path) -> None:
    # GIVEN a postback URL using a macro that is neither a tracker field nor built in
    text = ACME.replace("{amount}", "{commission}")
    # WHEN ops put it
    result = postback("affiliate", "put", str(write(tmp_path, text)))
    # THEN it is refused naming the URL field and the macro
    assert result.exit_code == 2
    assert "postback 1, url: unknown macro {commission}" in result.stderr
    assert backends.affiliates.items == {}


def test_a_private_or_loopback_url_is_refused_for_a_deployed_stack(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    for host in ("10.0.0.7", "2130706433", "169.254.169.254", "[::ffff:127.0.0.1]"):
        # GIVEN a postback URL to an address that must never be called
        text = ACME.replace("track.acme.example", host)
        # WHEN ops put it on a deployed stack
        result = postback("affiliate", "put", str(write(tmp_path, text)))
        # THEN it is refused, naming the URL field
        assert result.exit_code == 2, host
        assert "postback 1, url: " in result.stderr, host
        # AND the URL is quoted as written, its macros in place
        assert "?cid={clickid}&payout={amount}'" in result.stderr, result.stderr
    assert backends.affiliates.items == {}


def test_the_local_stack_alone_accepts_a_loopback_postback(backends: FakeBackends, tmp_path: Path) -> None:
    # GIVEN the script pointed at the local stack and a receiver on this machine
    path = write(tmp_path, ACME.replace("https://track.acme.example", "http://127.0.0.1:8765"))
    with pinned(Target.from_outputs({"DelayScale": "0.001"}, local=True, name="local")):
        # WHEN ops put it
        result = CliRunner().invoke(app, ["affiliate", "put", str(path)])
    # THEN it is saved, by "local"
    assert result.exit_code == 0, result.stderr
    assert backends.affiliates.items["1234567"].updated_by == OPS_ARN  # the fake backends' caller
    assert backends.affiliates.items["1234567"].config.postbacks[0].url.startswith("http://127.0.0.1:8765/")


def test_a_config_changed_by_someone_else_between_read_and_write_is_refused(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN a stored affiliate that someone else saves again while this put runs
    assert postback("affiliate", "put", str(write(tmp_path, ACME))).exit_code == 0
    backends.affiliates.interleaved_write = load_config_text(ACME.replace("Acme Media", "Acme (theirs)"))
    edited = write(tmp_path, ACME.replace("Acme Media", "Acme (mine)"), "mine.yaml")
    # WHEN ops put their edit
    result = postback("affiliate", "put", str(edited))
    # THEN the conditional write loses: exit 5, their change is kept
    assert result.exit_code == 5
    assert "changed since version 1" in result.stderr
    assert backends.affiliates.items["1234567"].config.name == "Acme (theirs)"


def test_an_exported_file_is_refused_once_the_stored_config_moved_on(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN an export at version 1, then someone else's change (version 2)
    assert postback("affiliate", "put", str(write(tmp_path, ACME))).exit_code == 0
    assert postback("export", str(tmp_path / "out")).exit_code == 0
    theirs = write(tmp_path, ACME.replace("Acme Media", "Acme (theirs)"), "theirs.yaml")
    assert postback("affiliate", "put", str(theirs)).exit_code == 0
    exported = tmp_path / "out" / "1234567.yaml"
    exported.write_text(exported.read_text().replace("Acme Media", "Acme (mine)"))
    # WHEN ops put their edit of the old export (and first try a dry run)
    dry = postback("affiliate", "put", str(exported), "--dry-run")
    result = postback("affiliate", "put", str(exported))
    # THEN both exit 5 and the other change stays
    assert dry.exit_code == 5
    assert result.exit_code == 5
    assert "read at version 1 and is now version 2" in result.stderr
    assert backends.affiliates.items["1234567"].config.name == "Acme (theirs)"


def test_get_masks_the_signing_secret(postback: Callable[..., Result], tmp_path: Path) -> None:
    # GIVEN an affiliate whose postbacks are signed
    assert postback("affiliate", "put", str(write(tmp_path, ACME + f"signing_secret: {SECRET}\n"))).exit_code == 0
    # WHEN ops get it, as a table and as JSON
    shown = postback("affiliate", "get", "1234567")
    data = postback("--json", "affiliate", "get", "1234567")
    # THEN the secret appears in neither
    assert shown.exit_code == 0
    assert SECRET not in shown.stdout
    assert "signing_secret: '********'" in shown.stdout
    assert SECRET not in data.stdout
    document = as_json(data)
    assert document["config"]["signing_secret"] == "********"  # type: ignore[index]
    assert document["version"] == 1  # type: ignore[index]
    assert document["updated_by"] == OPS_ARN  # type: ignore[index]


def test_an_unknown_affiliate_exits_4(postback: Callable[..., Result]) -> None:
    # GIVEN an empty stack; WHEN ops ask for, disable or enable an affiliate
    for command in ("get", "disable", "enable"):
        result = postback("affiliate", command, "999")
        # THEN each exits 4 with one sentence
        assert result.exit_code == 4, command
        assert result.stderr.strip() == "No affiliate 999 is onboarded."


def test_disable_then_enable(postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path) -> None:
    # GIVEN an enabled affiliate
    assert postback("affiliate", "put", str(write(tmp_path, ACME))).exit_code == 0
    # WHEN ops disable it, disable it again, then enable it
    disabled = postback("--json", "affiliate", "disable", "1234567")
    again = postback("affiliate", "disable", "1234567")
    listed = postback("--json", "affiliate", "list")
    enabled = postback("--json", "affiliate", "enable", "1234567")
    # THEN the flag follows, the second disable writes nothing, and list shows the state
    assert as_json(disabled)["enabled"] is False  # type: ignore[index]
    assert "already disabled" in again.stdout
    assert backends.affiliates.writes == 3  # put, disable, enable
    assert as_json(listed) == [
        {
            "affiliate_id": "1234567",
            "name": "Acme Media",
            "enabled": False,
            "version": 2,
            "updated_at": "2026-11-25T12:30:00Z",
            "updated_by": OPS_ARN,
            "postbacks": 1,
            "events": ["rebill", "sale"],
        }
    ]
    assert as_json(enabled)["enabled"] is True  # type: ignore[index]


def test_list_as_a_table(postback: Callable[..., Result], tmp_path: Path) -> None:
    # GIVEN two affiliates
    for example in ("revshare-default.yaml", "post-json.yaml"):
        assert postback("affiliate", "put", str(EXAMPLES / example)).exit_code == 0
    # WHEN ops list them
    result = postback("affiliate", "list")
    # THEN one row each, sorted by ID
    assert result.exit_code == 0
    assert result.stdout.index("1234567") < result.stdout.index("2468135")
    assert "Gamma Ads" in result.stdout


def test_export_then_put_changes_nothing(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN every example config stored, one of them disabled and one signed
    for example in sorted(EXAMPLES.glob("*.yaml")):
        assert postback("affiliate", "put", str(example)).exit_code == 0, example
    assert (
        postback(
            "affiliate", "put", str(write(tmp_path, ACME.replace("1234567", "42") + f"signing_secret: {SECRET}\n"))
        ).exit_code
        == 0
    )
    assert postback("affiliate", "disable", "2468135").exit_code == 0
    before = {key: (s.config, s.version) for key, s in backends.affiliates.items.items()}
    writes = backends.affiliates.writes
    # WHEN ops export them and put every exported file back
    exported = postback("--json", "export", str(tmp_path / "export"))
    files = sorted((tmp_path / "export").glob("*.yaml"))
    results = [postback("--json", "affiliate", "put", str(path)) for path in files]
    # THEN each file is private, each put reports no change, and nothing was written
    assert exported.exit_code == 0
    assert len(files) == len(before) == 5
    assert all(path.stat().st_mode & 0o077 == 0 for path in files)
    assert [as_json(r)["change"] for r in results] == ["none"] * 5  # type: ignore[index]
    assert backends.affiliates.writes == writes
    assert {key: (s.config, s.version) for key, s in backends.affiliates.items.items()} == before


def test_a_json_config_is_read_too(postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path) -> None:
    # GIVEN the config as JSON
    config = {
        "affiliate_id": "1234567",
        "name": "Acme Media",
        "postbacks": [{"events": ["sale"], "url": "https://track.acme.example/pb?cid={clickid}"}],
    }
    path = write(tmp_path, json.dumps(config), "acme.json")
    # WHEN ops put it
    result = postback("affiliate", "put", str(path))
    # THEN it is stored like its YAML twin
    assert result.exit_code == 0, result.stderr
    assert backends.affiliates.items["1234567"].config.postbacks[0].url == "https://track.acme.example/pb?cid={clickid}"


def test_get_saved_edited_and_put_back_is_refused_after_another_change(
    postback: Callable[..., Result], backends: FakeBackends, tmp_path: Path
) -> None:
    # GIVEN ops saved `affiliate get` to a file at version 1, then someone else saved version 2
    assert postback("affiliate", "put", str(write(tmp_path, ACME))).exit_code == 0
    saved = write(tmp_path, postback("affiliate", "get", "1234567").stdout, "saved.yaml")
    assert (
        postback("affiliate", "put", str(write(tmp_path, ACME.replace("Acme Media", "Theirs"), "t.yaml"))).exit_code
        == 0
    )
    # WHEN ops put their edit of the saved file
    saved.write_text(saved.read_text().replace("Acme Media", "Mine"))
    result = postback("affiliate", "put", str(saved))
    # THEN it is refused (exit 5); without the other change it would have gone through
    assert result.exit_code == 5
    assert backends.affiliates.items["1234567"].config.name == "Theirs"


def test_a_config_with_a_typo_or_no_postback_is_refused_in_the_writers_words(
    postback: Callable[..., Result], tmp_path: Path
) -> None:
    # GIVEN a config whose tracker misspells `fields`, and one with no postback at all
    typo = ACME.replace("postbacks:", "tracker:\n  feilds: [a, b]\npostbacks:")
    empty = 'affiliate_id: "1234567"\nname: Acme\npostbacks: []\n'
    # WHEN ops put them
    refused_typo = postback("affiliate", "put", str(write(tmp_path, typo, "typo.yaml")))
    refused_empty = postback("affiliate", "put", str(write(tmp_path, empty, "empty.yaml")))
    # THEN each reason says what to do, not how pydantic phrases it
    assert refused_typo.exit_code == refused_empty.exit_code == 2
    assert "tracker.feilds: unknown key `feilds` (did you mean `fields`?)" in refused_typo.stderr
    assert "postbacks: at least one postback is needed" in refused_empty.stderr
    assert "Extra inputs" not in refused_typo.stderr and "Tuple" not in refused_empty.stderr


def test_a_file_that_is_not_yaml_is_refused_naming_the_file(postback: Callable[..., Result], tmp_path: Path) -> None:
    # GIVEN a file with a YAML syntax error
    path = write(tmp_path, 'affiliate_id: "1234567"\nname: [Acme\n', "broken.yaml")
    # WHEN ops put it
    result = postback("affiliate", "put", str(path))
    # THEN the message names the file
    assert result.exit_code == 2
    assert str(path) in result.stderr, result.stderr


def test_with_json_a_refusal_is_json_on_stderr(postback: Callable[..., Result], tmp_path: Path) -> None:
    # GIVEN a refused config and an unknown affiliate
    refused = postback("--json", "affiliate", "put", str(write(tmp_path, ACME.replace("{amount}", "{commission}"))))
    unknown = postback("--json", "affiliate", "get", "404")
    # THEN scripts read each failure as JSON on stderr, stdout empty
    assert (refused.exit_code, unknown.exit_code) == (2, 4)
    assert refused.stdout == unknown.stdout == ""
    document = json.loads(refused.stderr)
    assert document["error"] == "invalid_config"
    assert "unknown macro {commission}" in document["message"]
    assert document["errors"] == [{"field": "postbacks.0.url", "reason": document["errors"][0]["reason"]}]
    assert json.loads(unknown.stderr) == {"error": "not_found", "message": "No affiliate 404 is onboarded."}


def test_help_texts_have_no_type_placeholders_for_flags() -> None:
    # GIVEN the script's help pages
    runner = CliRunner()
    pages = [
        runner.invoke(app, [*command, "--help"], terminal_width=100)
        for command in (
            [],
            ["affiliate"],
            ["affiliate", "put"],
            ["test", "start"],
            ["deliveries"],
            ["replay"],
            ["preview"],
        )
    ]
    # THEN no flag shows `<bool>`, and every command's summary is its whole first sentence
    # (wrapped if need be, never cut off with "..." mid-sentence), in every group's page
    for page in pages:
        assert page.exit_code == 0
        assert "<bool>" not in page.stdout, page.stdout
    for page in (pages[0], pages[1], *(runner.invoke(app, [group, "--help"]) for group in ("test", "outbox"))):
        listing = page.stdout.split("Commands:", 1)[1]
        summaries = re.split(r"\n  (?=\S)", "\n" + listing.strip("\n"))
        for summary in filter(None, (" ".join(s.split()) for s in summaries)):
            assert summary.endswith((".", ")")) and "..." not in summary, summary
