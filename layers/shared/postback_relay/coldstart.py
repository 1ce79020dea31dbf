"""What a handler does at init when no caller waits for it (SnapStart, provisioned concurrency),
and what it refreshes after a SnapStart restore.

On an on-demand cold start the caller waits for the init and the first invocation alike, so
the handlers build their clients and their deferred pydantic models when first needed. When
Lambda initialises ahead of the caller (`AWS_LAMBDA_INITIALIZATION_TYPE` is `snap-start` or
`provisioned-concurrency`), `prime` does that work at init instead, so it lands in the snapshot.

After a restore (hooks of `snapshot_restore_py`, which the Python managed runtimes include;
absent elsewhere, where the hooks are never needed), state that must not be shared between
restored environments or that may be stale is refreshed: the `random` module's seed, and
whatever the handler registers (its secret cache, its clients when their credentials are
not refreshable: `postback_relay.wiring.refresh_after_restore`, beside the clients it rebuilds).

This module knows nothing of the composition root (wiring): observability imports it.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

_INIT_OFF_THE_CALLERS_PATH = frozenset({"snap-start", "provisioned-concurrency"})


def initialization_type() -> str:
    return os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")


def init_is_off_the_callers_path() -> bool:
    return initialization_type() in _INIT_OFF_THE_CALLERS_PATH


def build_models(models: Iterable[Any]) -> Callable[[], None]:
    """A priming step: builds the validators of pydantic models declared with defer_build."""

    def build() -> None:
        for model in models:
            model.model_rebuild()

    return build


def prime(*steps: Callable[[], object]) -> bool:
    """Run `steps` now if this init is off the caller's path; True when they ran."""
    if not init_is_off_the_callers_path():
        return False
    for step in steps:
        step()
    return True


def after_restore(hook: Callable[[], None]) -> Callable[[], None]:
    """Register `hook` to run after a SnapStart restore (a no-op outside SnapStart)."""
    if initialization_type() != "snap-start":
        return hook
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - only absent outside Lambda's managed runtimes
        logger.warning("snapshot_restore_py is missing: nothing is refreshed after a restore")
        return hook
    register_after_restore(hook)
    return hook


def reseed_random() -> None:
    """Every environment restored from one snapshot would otherwise draw the same numbers."""
    random.seed(os.urandom(32))


def credentials_refresh_themselves(session: Any) -> bool:
    """Whether a boto3 session's credentials renew themselves (container credentials), so
    that clients built before the snapshot stay usable after a restore."""
    if session is None:
        return False
    credentials = session.get_credentials()
    return credentials is not None and hasattr(credentials, "refresh_needed")
