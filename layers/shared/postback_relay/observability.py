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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, overload

from aws_lambda_powertools import Logger
from aws_lambda_powertools.tracing.tracer import Tracer

from postback_relay.coldstart import init_is_off_the_callers_path

if TYPE_CHECKING:
    from aws_lambda_powertools.tracing.base import BaseProvider

F = TypeVar("F", bound=Callable[..., Any])

LIBRARY_LOGGER = "postback_relay"


NEUTRAL_SERVICE = "postback-relay"

# The Logger of the invocation running in this thread (or task), set by FunctionLogger's
# inject_lambda_context: the library's lines go through it, with this invocation's keys alone.
_invocation_logger: ContextVar[Logger | None] = ContextVar("postback_relay_invocation_logger", default=None)
# Every function Logger that formats the library's lines: one in Lambda, several in one process
# (the local stack, the tests).
_function_loggers: list[Logger] = []
_neutral: list[Logger] = []


class FunctionLogger(Logger):
    """A function's Logger whose invocations never see another invocation's keys.

    `inject_lambda_context` always clears the keys of the previous invocation (a warm instance
    keeps the Logger: a `run_id` appended by one invocation would otherwise stay on the lines of
    the next), and, for the invocation's length, makes this Logger the one the library's lines
    (the services', the adapters') go through: in one process holding several functions (the
    local stack), a line of ingest's service never goes out with the test-link function's keys.
    """

    @overload
    def inject_lambda_context(
        self,
        lambda_handler: F,
        log_event: bool | None = None,
        correlation_id_path: str | None = None,
        clear_state: bool | None = True,
        flush_buffer_on_uncaught_error: bool = False,
    ) -> F: ...

    @overload
    def inject_lambda_context(
        self,
        lambda_handler: None = None,
        log_event: bool | None = None,
        correlation_id_path: str | None = None,
        clear_state: bool | None = True,
        flush_buffer_on_uncaught_error: bool = False,
    ) -> Callable[[F], F]: ...

    def inject_lambda_context(
        self,
        lambda_handler: F | None = None,
        log_event: bool | None = None,
        correlation_id_path: str | None = None,
        clear_state: bool | None = True,  # always on: ignored
        flush_buffer_on_uncaught_error: bool = False,
    ) -> F | Callable[[F], F]:
        if lambda_handler is None:
            return functools.partial(
                self.inject_lambda_context,
                log_event=log_event,
                correlation_id_path=correlation_id_path,
                flush_buffer_on_uncaught_error=flush_buffer_on_uncaught_error,
            )
        injected = super().inject_lambda_context(
            lambda_handler,
            log_event=log_event,
            correlation_id_path=correlation_id_path,
            clear_state=True,
            flush_buffer_on_uncaught_error=flush_buffer_on_uncaught_error,
        )

        @functools.wraps(lambda_handler)
        def invocation(*args: Any, **kwargs: Any) -> Any:
            token = _invocation_logger.set(self)
            try:
                return injected(*args, **kwargs)
            finally:
                _invocation_logger.reset(token)

        return invocation


@contextmanager
def invocation_logs(logger: Logger) -> Iterator[None]:
    """The library's lines go through `logger` (and its keys) in this block: what
    FunctionLogger.inject_lambda_context does around an invocation."""
    token = _invocation_logger.set(logger)
    try:
        yield
    finally:
        _invocation_logger.reset(token)


class _ThroughTheInvocationsLogger(logging.Handler):
    """The library tree's one handler: each line goes through the Logger of the invocation that
    wrote it. Outside an invocation (a thread of its own), through the function's Logger when the
    process holds one function (Lambda), else through a neutral Logger with no invocation keys."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = _invocation_logger.get()
        if logger is None:
            logger = _function_loggers[0] if len(_function_loggers) == 1 else _neutral_logger()
        if record.levelno >= logger.log_level:
            logger.registered_handler.handle(record)


_THROUGH_THE_INVOCATIONS_LOGGER = _ThroughTheInvocationsLogger()


def _neutral_logger() -> Logger:
    if not _neutral:
        _neutral.append(Logger(service=NEUTRAL_SERVICE))
    return _neutral[0]


def handler_logger() -> FunctionLogger:
    """The function's Logger (POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL), with the
    `postback_relay` logger tree writing through it during its invocations."""
    logger = FunctionLogger()
    keep_the_stricter_level(logger)
    format_library_logs(logger)
    return logger


def keep_the_stricter_level(logger: Logger) -> int:
    """The Logger at the stricter of Lambda's application log level and POWERTOOLS_LOG_LEVEL.

    Powertools takes Lambda's level (ApplicationLogLevel, AWS_LAMBDA_LOG_LEVEL) over its own.
    The template sets Lambda's to INFO, so that the metrics' EMF lines (which carry no level, so
    Lambda counts them INFO) pass its filter; the function's own level is LogLevel's."""
    wanted = logging.getLevelName(os.environ.get("POWERTOOLS_LOG_LEVEL", "").upper())
    if isinstance(wanted, int) and wanted > logger.log_level:
        logging.getLogger(logger.name).setLevel(wanted)
    return logger.log_level


def format_library_logs(source: Logger, name: str = LIBRARY_LOGGER) -> logging.Logger:
    """`name`'s logger (and every logger under it, made before or after) writes through the
    Logger of the invocation running (`source` for a function's), never through the root
    logger's handlers; at the lowest level of those Loggers (each line is then held to its
    own Logger's level). Idempotent."""
    if all(known is not source for known in _function_loggers):
        _function_loggers.append(source)
    tree = logging.getLogger(name)
    tree.handlers = [_THROUGH_THE_INVOCATIONS_LOGGER]
    tree.setLevel(min(known.log_level for known in _function_loggers))
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
