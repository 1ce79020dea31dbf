"""`make run` (`python -m postback_ops.local`): the whole relay on this machine until Ctrl-C.

Ports and the secret come from the environment: POSTBACK_LOCAL_API_PORT (3000),
POSTBACK_LOCAL_AWS_PORT (4566), POSTBACK_LOCAL_RECEIVER_PORT (3001, `off` for none),
POSTBACK_SIGNING_SECRET (local-dev-secret), POSTBACK_LOCAL_DELAY_SCALE (0.00025),
POSTBACK_LOCAL_LOG_LEVEL (the handlers' log level, WARNING; INFO with POSTBACK_LOCAL_LOG=json),
POSTBACK_LOCAL_LOG (`json`: the handlers' full JSON logs and libraries' warnings in the terminal;
by default it holds only the stack's own readable lines). A port of 0 takes a free one;
the line starting with `local stack ready` gives the ports chosen, as JSON, for scripts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from postback_ops.local.runtime import MetricLinesFilter, json_logs_wanted
from postback_ops.local.stack import (
    OUTPUTS_PARAMETER,
    RECEIVER_AFFILIATE_ID,
    LocalRelay,
    LocalSettings,
    PortBusy,
    portal_link,
)

READY_PREFIX = "local stack ready "


def banner(relay: LocalRelay) -> str:
    secret = relay.settings.signing_secret
    receiver = relay.receiver.url if relay.receiver else None
    lines = [
        "",
        "postback relay: local stack running (no AWS account needed)",
        f"  conversion API   {relay.api_url}/conversions",
        f"  AWS (moto)       {relay.aws_endpoint}   outputs in SSM {OUTPUTS_PARAMETER}",
        f"  signing secret   {secret}",
        f"  retry delays     x{relay.settings.delay_scale}: {_schedule_line(relay)}",
    ]
    if receiver:
        lines.append(f"  test receiver    {receiver}/  (an affiliate server on loopback; prints each hit)")
    recorded = relay.settings.stack_file is not None
    endpoint_env = "" if recorded else f"POSTBACK_LOCAL_ENDPOINT={relay.aws_endpoint} "
    finds = (
        f"finds this stack through {_shown(relay.settings.stack_file)}"
        if relay.settings.stack_file is not None
        else "reaches this stack through POSTBACK_LOCAL_ENDPOINT"
    )
    lines += [
        "",
        "The config script is .venv/bin/postback: run `source .venv/bin/activate` in your shell first",
        f"(or type .venv/bin/postback). `postback --local` {finds}:",
        f"  {endpoint_env}postback --local affiliate put {_shown(relay.receiver_affiliate_file)}",
        f"  {endpoint_env}postback --local deliveries --affiliate {RECEIVER_AFFILIATE_ID}",
        f"  {endpoint_env}postback --local health --since 1h",
        f"  {endpoint_env}postback --local --json test start {RECEIVER_AFFILIATE_ID} --wait",
        "Post a signed conversion:",
        '  BODY=\'{"transaction_id":"T-1","event":"sale","offer":{"id":"89","type":"revshare"},'
        '"amount":"25.00","currency":"EUR",'
        '"link":"http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&id=1234567&tracker=trID_a1-T9-c123-x_trID",'
        '"occurred_at":"2026-11-25T12:00:00Z"}\'',
        '  TS=$(date +%s); SIG=$(printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac '
        f"'{secret}' | sed 's/^.* //')",
        f'  curl -sS {relay.api_url}/conversions -H "X-Postback-Timestamp: $TS" '
        '-H "X-Postback-Signature: v1=$SIG" -H "Content-Type: application/json" -d "$BODY"',
        "",
        f"The affiliate portal of {RECEIVER_AFFILIATE_ID} (after the `affiliate put` above; opens once, 7 days):",
        f"  {portal_link(relay)}",
        f"  a new one: {endpoint_env}postback --local portal link {RECEIVER_AFFILIATE_ID}",
        "",
        "Circuit notices (the alarm topic) appear below as lines starting with `alarm`.",
        "Ctrl-C stops it.",
        "",
    ]
    return "\n".join(lines)


def _schedule_line(relay: LocalRelay) -> str:
    schedule = relay.outputs.get("RetryScheduleSeconds")
    deadline = relay.outputs.get("TestLinkDeadlineSeconds")
    if not (schedule and deadline):
        return "every delay scaled down"
    return (
        f"the ~27 h retry schedule ends within {schedule} s; a test link waits up to {deadline} s "
        "(every attempt of the real 35 minutes)"
    )


def _shown(path: Path | None) -> str:
    if path is None:
        return "examples/affiliates/revshare-default.yaml"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def ready_line(relay: LocalRelay) -> str:
    details = {
        "api_url": relay.api_url,
        "aws_endpoint": relay.aws_endpoint,
        "receiver_url": relay.receiver.url if relay.receiver else None,
        "outputs": relay.outputs,
    }
    return READY_PREFIX + json.dumps(details)


class OneLineWarnings(logging.Handler):
    """Libraries' warnings (moto's, botocore's) as one short line each, never a traceback or a
    1,000-character exception dump: the terminal is for people (POSTBACK_LOCAL_LOG=json keeps
    them whole)."""

    def emit(self, record: logging.LogRecord) -> None:
        first = record.getMessage().strip().splitlines()[0] if record.getMessage().strip() else ""
        shown = first if len(first) <= MAX_LINE else first[: MAX_LINE - 1] + "…"
        print(f"warning   {record.name}: {shown}", file=sys.stderr, flush=True)


MAX_LINE = 160


def quiet_libraries() -> None:
    logging.basicConfig(level=logging.WARNING, handlers=[OneLineWarnings()], force=True)
    # moto logs every failed state machine execution as an exception (a Fail state included):
    # the test verdict says it in words.
    logging.getLogger("moto").setLevel(logging.CRITICAL)


def main() -> int:
    json_logs = json_logs_wanted(os.environ)
    sys.stdout = MetricLinesFilter(sys.stdout, json_logs=json_logs)
    if not json_logs:
        quiet_libraries()
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    relay = LocalRelay(LocalSettings.from_env(), log=lambda line: print(line, flush=True))
    try:
        relay.start()
    except PortBusy as exc:
        print(f"the local stack could not start: {exc}.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"the local stack could not start: {exc} (is another `make run` still running?)", file=sys.stderr)
        return 1
    try:
        print(banner(relay), flush=True)
        print(ready_line(relay), flush=True)
        stopping.wait()
        print("stopping the local stack...", flush=True)
    finally:
        relay.stop()
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
