"""What the browser tests share: affiliates with receivers of their own, portal links, entering."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
from e2e.e2e_support import CliResult, LocalStackProcess
from e2e.test_local_stack import revshare_link
from playwright.sync_api import Page

from postback_ops.local.receiver import Answer, Receiver
from postback_relay.domain.portal import link_url, new_link, sign_pass

Cli = Callable[..., CliResult]


def onboard(
    cli: Cli, tmp_path: Path, own: list[Receiver], affiliate_id: str, *, self_service: str = "approve"
) -> Receiver:
    """An affiliate whose postbacks and test link go to a receiver of its own."""
    receiver = Receiver().start()
    own.append(receiver)
    receiver.respond("/click", [Answer.redirect(revshare_link(affiliate_id, "demo-T0-c4242-x"))])
    config = tmp_path / f"{affiliate_id}.yaml"
    config.write_text(
        f"""
affiliate_id: "{affiliate_id}"
name: Browser {affiliate_id}
self_service: {self_service}
postbacks:
  - events: [sale, rebill]
    url: "{receiver.url}/pb?cid={{clickid}}&ev={{event}}&tx={{transaction_id}}"
  - events: [registration, trial]
    url: "{receiver.url}/lead?cid={{clickid}}&ev={{event}}"
test_link: "{receiver.url}/click"
""",
        encoding="utf-8",
    )
    result = cli("affiliate", "put", str(config))
    assert result.exit_code == 0, result.stderr
    return receiver


def portal_url(cli: Cli, affiliate_id: str, *args: str) -> str:
    result = cli("portal", "link", affiliate_id, *args)
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = result.json()
    assert set(data) == {"affiliate_id", "url", "expires_at"}
    return str(data["url"])


def expired_url(stack: LocalStackProcess, affiliate_id: str) -> str:
    """A link that expired a minute ago, signed with the stack's own portal secret."""
    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="eu-west-1")
    secrets = session.client("secretsmanager", endpoint_url=stack.aws_endpoint)
    secret = secrets.get_secret_value(SecretId=stack.outputs["PortalSecretArn"])["SecretString"].encode()
    link = new_link(affiliate_id, epoch=0, lifetime=timedelta(minutes=1), now=time.time() - 120)
    return link_url(stack.api_url, sign_pass(link, secret))


def enter(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Enter").click()
    page.wait_for_url("**/portal/home")


def rows(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found
