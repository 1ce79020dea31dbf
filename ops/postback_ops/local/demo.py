"""`make demo`: a scripted tour of the relay on the local stack, ending on its own.

It starts the local stack in-process (on free ports, so it runs beside a `make run`),
onboards an affiliate whose postbacks go to a receiver on loopback, posts signed conversions
of both offer types and every event, shows the postbacks the receiver got and the delivery
log, plays a failing affiliate server that recovers, and runs a test link to its verdict.
Everything ops would do goes through the `postback` config script, as ops would type it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from postback_ops.local.conversions import every_sample_conversion, post_conversions
from postback_ops.local.receiver import Answer, Receiver
from postback_ops.local.runtime import MetricLinesFilter
from postback_ops.local.stack import (
    RECEIVER_AFFILIATE_ID,
    RECEIVER_NETWORK_LINK,
    LocalRelay,
    LocalSettings,
    receiver_affiliate_config,
)


def _title(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def postback_cli(relay: LocalRelay, *args: str) -> int:
    """Run the config script against the local stack, showing the command as ops would type it."""
    print(f"$ postback --local {' '.join(args)}", flush=True)
    script = Path(sys.executable).with_name("postback")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from postback_ops.cli import main; main()"]
    env = {**os.environ, "POSTBACK_LOCAL_ENDPOINT": relay.aws_endpoint}
    return subprocess.run([*command, "--local", *args], env=env, check=False, timeout=120).returncode  # noqa: S603


def tour(relay: LocalRelay, receiver: Receiver, workdir: Path) -> int:
    secret = relay.settings.signing_secret

    _title("1. Onboard an affiliate whose postbacks go to a receiver on this machine")
    config = workdir / "demo-affiliate.yaml"
    config.write_text(receiver_affiliate_config(receiver.url), encoding="utf-8")
    print(config.read_text(encoding="utf-8"), flush=True)
    if postback_cli(relay, "affiliate", "put", str(config)) != 0:
        return 1

    _title("2. The platform posts signed conversions: both offer types, every event")
    conversions = every_sample_conversion("DEMO")
    queued = 0
    for conversion in conversions:
        answer = post_conversions(relay.api_url, conversion, secret)
        queued += int(answer.json().get("postbacks_queued", 0)) if answer.status_code == 202 else 0
    repeat = post_conversions(relay.api_url, conversions[0], secret)
    print(f"posting {conversions[0]['transaction_id']} again: HTTP {repeat.status_code} (a repeat fires nothing new)")
    unsigned = post_conversions(relay.api_url, conversions[0], "not-the-secret")
    print(f"a request signed with the wrong secret: HTTP {unsigned.status_code}", flush=True)

    _title(f"3. The receiver got the {queued} postbacks")
    hits = receiver.wait_for(queued, timeout_s=60)
    print(f"the receiver got {len(hits)} postback(s): the `receiver` lines above", flush=True)
    postback_cli(relay, "deliveries", "--affiliate", RECEIVER_AFFILIATE_ID, "--limit", "5")

    _title("4. An affiliate server that fails, then recovers: the postback is retried until delivered")
    receiver.respond("/postback", [500, 503, 200])
    flaky = {**conversions[2], "transaction_id": "DEMO-flaky"}
    post_conversions(relay.api_url, flaky, secret)
    receiver.wait_for(len(hits) + 3, timeout_s=60)
    postback_cli(relay, "deliveries", "--transaction", "DEMO-flaky")

    _title("5. A test link, followed to the network's link, its postbacks fired and checked")
    receiver.respond("/click", [Answer.redirect(RECEIVER_NETWORK_LINK)])
    return postback_cli(relay, "test", "start", RECEIVER_AFFILIATE_ID, "--wait")


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout = MetricLinesFilter(sys.stdout)
    # The demo records nothing: a `make run` of the same checkout keeps its own stack record.
    settings = replace(
        LocalSettings.from_env(), api_port=0, aws_port=0, receiver_port=0, receiver_affiliate_path=None, stack_file=None
    )
    print("Starting the local stack (moto, the handlers, the state machine)...", flush=True)
    with LocalRelay(settings, log=lambda line: print(f"    | {line}", flush=True)) as relay:
        assert relay.receiver is not None
        print(f"API {relay.api_url}, AWS {relay.aws_endpoint}, receiver {relay.receiver.url}", flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            code = tour(relay, relay.receiver, Path(workdir))
    print("\nThe tour is over." if code == 0 else f"\nThe tour ended with a failure (exit {code}).", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
