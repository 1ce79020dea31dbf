"""The handlers' Powertools Logger, which also formats the library's log lines, and
Powertools' Tracer without its cold-start cost when tracing is off.

`handler_logger()` is the function's Logger. The services and adapters log with the standard
library (`logging.getLogger(__name__)`, `extra={...}`) under the `postback_relay` logger;
that logger gets the function Logger's handler, formatter and level, so their lines come out
as the same structured JSON (with the invocation's keys: request ID, correlation ID) and are
not handed to the root logger as well (Lambda's runtime prints those a second time).

Powertools' `Tracer()` imports the X-Ray SDK and patches the libraries it is given as soon as
it is built, even when tracing is disabled (its provider is the SDK's recorder either way).
`LazyTracer` decides from the environment, with Powertools' own rule, whether tracing is on:

- off (`POWERTOOLS_TRACE_DISABLED`; `TRACING_MODE=PassThrough` on a function no caller can
  sample; outside Lambda; under SAM local): the X-Ray SDK is never imported and the
  decorators hand the function back unchanged (nothing on the warm path either);
- on: the real Tracer (the SDK's import, the patching of botocore/requests) is built on the
  first invocation, before the handler's clients are, or at init when the init is not on a
  caller's path (SnapStart, provisioned concurrency: `AWS_LAMBDA_INITIALIZATION_TYPE`).

Every handler, including ones added later, gets this by building its tracer here.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from aws_lambda_powertools import Logger
from aws_lambda_powertools.tracing.tracer import Tracer

from postback_relay.coldstart import init_is_off_the_callers_path

if TYPE_CHECKING:
    from aws_lambda_powertools.tracing.base import BaseProvider

F = TypeVar("F", bound=Callable[..., Any])

LIBRARY_LOGGER = "postback_relay"


def handler_logger() -> Logger:
    """The function's Logger (POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL), with the
    `postback_relay` logger tree writing through it."""
    logger = Logger()
    format_library_logs(logger)
    return logger


def format_library_logs(source: Logger, name: str = LIBRARY_LOGGER) -> logging.Logger:
    """`name`'s logger (and every logger under it, made before or after) writes through
    `source`'s handler at `source`'s level, not through the root logger's. Idempotent."""
    tree = logging.getLogger(name)
    tree.handlers = list(source.handlers)
    tree.setLevel(source.log_level)
    tree.propagate = False
    return tree


def tracing_enabled() -> bool:
    """Powertools' rule (POWERTOOLS_TRACE_DISABLED, outside Lambda or under SAM local: off),
    and off under `TRACING_MODE=PassThrough`: the template gives TRACING_MODE only to a
    function that no caller can sample (behind an HTTP API), which PassThrough never traces."""
    if os.environ.get("TRACING_MODE", "") == "PassThrough":
        return False
    return not Tracer._is_tracer_disabled()


class LazyTracer:
    """The subset of Powertools' Tracer the handlers use, built when (and if) it is needed."""

    def __init__(self, *, patch_modules: Sequence[str], enabled: bool | None = None) -> None:
        self.patch_modules = tuple(patch_modules)
        self.enabled = tracing_enabled() if enabled is None else enabled
        self._tracer: Tracer | None = None
        if self.enabled and init_is_off_the_callers_path():
            self.tracer()

    def tracer(self) -> Tracer:
        """The real Tracer: imports the X-Ray SDK and patches `patch_modules` the first time."""
        if self._tracer is None:
            self._tracer = Tracer(patch_modules=self.patch_modules, disabled=not self.enabled)
        return self._tracer

    @property
    def provider(self) -> BaseProvider:
        return self.tracer().provider

    @overload
    def capture_lambda_handler(self, lambda_handler: F) -> F: ...

    @overload
    def capture_lambda_handler(
        self, lambda_handler: None = None, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[F], F]: ...

    def capture_lambda_handler(
        self,
        lambda_handler: F | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> F | Callable[[F], F]:
        def decorate(function: F) -> F:
            return self._deferred(
                function,
                lambda: self.tracer().capture_lambda_handler(
                    function, capture_response=capture_response, capture_error=capture_error
                ),
            )

        return decorate if lambda_handler is None else decorate(lambda_handler)

    @overload
    def capture_method(self, method: F) -> F: ...

    @overload
    def capture_method(
        self, method: None = None, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[F], F]: ...

    def capture_method(
        self,
        method: F | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> F | Callable[[F], F]:
        def decorate(function: F) -> F:
            return self._deferred(
                function,
                lambda: self.tracer().capture_method(capture_response=capture_response, capture_error=capture_error)(
                    function
                ),
            )

        return decorate if method is None else decorate(method)

    def _deferred(self, function: F, traced: Callable[[], Callable[..., Any]]) -> F:
        if not self.enabled:
            return function  # tracing off: the function itself, no wrapper on the warm path
        built: list[Callable[..., Any]] = []

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not built:
                built.append(traced())
            return built[0](*args, **kwargs)

        return call  # type: ignore[return-value]
