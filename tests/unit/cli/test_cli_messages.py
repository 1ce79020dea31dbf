"""Every `postback` command's error paths, with the message each one prints, in one place.

Each case names its situation. The same situation must read the same from every command (one
sentence, from postback_relay.domain.messages): the test fails when two messages for one
situation differ. Every message is a sentence (capital letter, full stop), in the user's terms:
no Python list, no pydantic prefix. A new command's error paths are added here.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes.cli import FakeBackends
from typer.testing import Result

from postback_relay.domain import messages

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "affiliates"

# (situation, the command's arguments, its exit code)
ERROR_PATHS: list[tuple[str, list[str], int]] = [
    ("unknown affiliate", ["affiliate", "get", "9999999"], 4),
    ("unknown affiliate", ["affiliate", "disable", "9999999"], 4),
    ("unknown affiliate", ["affiliate", "enable", "9999999"], 4),
    ("unknown affiliate", ["deliveries", "--affiliate", "9999999"], 4),
    ("unknown affiliate", ["replay", "--affiliate", "9999999"], 4),
    ("unknown affiliate", ["health", "--affiliate", "9999999"], 4),
    ("unknown affiliate", ["test", "start", "9999999"], 4),
    ("unknown affiliate", ["preview", "9999999", "--event", "sale", "--tracker", "trID_a1-T9-c1-x_trID"], 4),
    ("unknown test run", ["test", "status", "nope"], 4),
    ("no such option", ["health", "--nope"], 2),
    ("no such option", ["deliveries", "--nope"], 2),
    ("missing argument", ["affiliate", "get"], 2),
    ("missing argument", ["test", "status"], 2),
    ("invalid choice", ["deliveries", "--affiliate", "1234567", "--state", "done"], 2),
    ("invalid choice", ["preview", "1234567", "--event", "purchase", "--tracker", "trID_a1-T9-c1-x_trID"], 2),
    ("bad duration", ["health", "--since", "3 weeks"], 2),
]

# What each situation reads, where the words are the catalogue's
EXPECTED = {
    "unknown affiliate": messages.no_affiliate("9999999"),
    "unknown test run": messages.no_test_run("nope"),
}


@pytest.fixture
def acme(postback: Callable[..., Result]) -> None:
    """GIVEN affiliate 1234567 onboarded (so that only the case's fault is at fault)."""
    assert postback("affiliate", "put", str(EXAMPLES / "revshare-default.yaml")).exit_code == 0


def _wording(message: str) -> str:
    """A usage error's words without what it names (the option, the argument, the value)."""
    without_hint = re.sub(r" \(Possible options:[^)]*\)", "", message)
    wording = re.sub(r"'[^']*'|--[\w-]+|See `[^`]*`", "_", without_hint)
    return re.sub(r"_(, _)+", "_, _", wording)  # a list of choices reads the same, however long


def _said(result: Result) -> str:
    document = json.loads(result.stderr)
    assert set(document) >= {"error", "message"}, document
    return str(document["message"])


@pytest.mark.usefixtures("acme")
def test_every_error_path_is_one_json_sentence_and_one_situation_reads_the_same_everywhere(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    said: dict[str, set[str]] = defaultdict(set)
    for situation, arguments, code in ERROR_PATHS:
        # WHEN the command fails, with --json (after the command: accepted there too)
        result = postback(*arguments, "--json")
        # THEN its exit code, and one JSON document on stderr: an error code and a sentence
        assert result.exit_code == code, (arguments, result.stdout, result.stderr)
        message = _said(result)
        # (a sentence may open with an option's name, as the user writes it: `--since: ...`)
        assert (message[0].isupper() or message.startswith("--")) and message.endswith("."), (arguments, message)
        for leak in ("Value error", "Input should be", "['", "Traceback"):
            assert leak not in message, (arguments, message)
        said[situation].add(message if situation in EXPECTED else _wording(message))
        # AND without --json, the same sentence on stderr alone
        plain = postback(*arguments)
        assert plain.exit_code == code
        assert message.split(" See `")[0] in plain.stderr, (arguments, plain.stderr)

    # THEN one situation reads the same from every command, and as the catalogue says it
    for situation, texts in said.items():
        assert len(texts) == 1, (situation, texts)
    for situation, text in EXPECTED.items():
        assert said[situation] == {text}


def test_global_options_are_accepted_after_the_command(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # WHEN --json is written after the command, or before it
    after = postback("affiliate", "list", "--json")
    before = postback("--json", "affiliate", "list")
    # THEN both are the same JSON answer (not "No such option: --json")
    assert after.exit_code == before.exit_code == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout) == []


def test_a_usage_error_under_json_is_json_on_stderr(postback: Callable[..., Result]) -> None:
    # WHEN an unknown option is given under --json
    result = postback("--json", "health", "--nope")
    # THEN exit 2 and {"error": "usage", "message": ...} on stderr, naming the option and the help
    assert result.exit_code == 2
    document = json.loads(result.stderr)
    assert document["error"] == "usage"
    assert "--nope" in document["message"] and "postback health --help" in document["message"]
