"""Every error class of the relay. Adapters translate AWS and HTTP errors into these; the
handlers answer them (the conversion API's refusals, by one exception-handler registry) or
report them to Powertools' BatchProcessor (the batch item signals at the end).

Each domain error carries a machine-readable `kind` (stable, used in results, logs and
metrics) and a sentence a person can act on.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MAX_FIELD_ERRORS = 100
BODY_FIELD = "body"  # the `field` of an error about the body as a whole


class DomainError(Exception):
    """Base of every domain error."""

    kind = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LinkError(DomainError):
    """A network link that cannot be read (not a URL, no tracker, no `id`)."""

    kind = "bad_link"


class TrackerError(DomainError):
    """A tracker that does not match the affiliate's structure."""

    kind = "tracker_mismatch"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        # one of: wrapper_missing, field_count, placeholder_unfilled, affiliate_mismatch,
        # value_too_long, empty_value
        self.reason = reason


class ConfigError(DomainError):
    """An affiliate configuration refused, with the field at fault."""

    kind = "invalid_config"

    def __init__(self, message: str, *, field: str, errors: list[tuple[str, str]] | None = None) -> None:
        # Every problem found, as (dotted field path, reason); the first one is `field`/`reason`,
        # so that a caller showing one error shows the first, and a CLI can show them all.
        self.errors: list[tuple[str, str]] = errors if errors else [(field, message)]
        summary = "; ".join(f"{f}: {r}" for f, r in self.errors)
        super().__init__(summary)
        self.field = field
        self.reason = message


class UnreadableConfigError(DomainError):
    """A stored configuration the code no longer accepts (saved under other rules): only that
    affiliate's conversions are affected, and ops must put it again."""

    kind = "invalid_config"


class UnsafeUrlError(DomainError):
    """A URL whose scheme or address must never be called (SSRF protection)."""

    kind = "unsafe_url"


class PostbackRefused(DomainError):
    """A postback of a conversion that cannot be sent as rendered (a macro without a value, a
    URL that may not be called, a message too large): the conversion fires none of its
    postbacks. `kind` names which, `index` the postback in the config."""

    def __init__(self, message: str, *, kind: str, index: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.index = index


class SignatureError(DomainError):
    """A conversion request whose signature is missing, wrong or expired."""

    kind = "bad_signature"


class InfrastructureError(DomainError):
    """An AWS or network dependency failed; the caller may retry. Never the caller's fault."""

    kind = "unavailable"


class ConflictError(DomainError):
    """A conditional write lost: someone changed the item since it was read."""

    kind = "conflict"


class NotFoundError(DomainError):
    """The thing asked for does not exist."""

    kind = "not_found"


# --- the conversion API's refusals (contract section 2) --------------------------------------


class PayloadTooLarge(DomainError):
    """A conversion request body over the function's limit (413)."""

    kind = "payload_too_large"


class UnsupportedMediaType(DomainError):
    """A conversion request that is not UTF-8 JSON (415)."""

    kind = "unsupported_media_type"


@dataclass(frozen=True)
class FieldError:
    """One problem with the request: `field` is a dotted path like `conversions.3.amount`."""

    field: str
    message: str


class InvalidConversionRequest(DomainError):
    """The request body is not one valid conversion or a valid batch: nothing is taken (400)."""

    kind = "invalid_request"

    def __init__(self, errors: Sequence[FieldError]) -> None:
        shown = list(errors[:MAX_FIELD_ERRORS])
        if len(errors) > MAX_FIELD_ERRORS:
            # A hostile body can hold tens of thousands of errors; the answer must stay small.
            shown.append(FieldError(BODY_FIELD, f"{len(errors) - MAX_FIELD_ERRORS} more errors not shown."))
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in shown))
        self.errors: tuple[FieldError, ...] = tuple(shown)


# --- batch item signals: not domain errors, a record's report to Powertools' BatchProcessor ---


class PostbackNotDone(Exception):
    """Leaves an SQS record on the queue: its next attempt (or deferral) is scheduled."""


class PostbacksNotQueued(Exception):
    """Reports a stream record as a batch item failure: Lambda retries the batch from it."""


class DeliveryTransportError(DomainError):
    """A postback call that got no HTTP answer; always worth another attempt."""

    kind = "transport"

    def __init__(self, kind: Literal["timeout", "connection_error"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


class FieldProblems(ValueError):
    """Problems found by a validator that sees several fields, each with its path relative to
    the model validated. `parse_config` turns them into dotted paths from the config's root."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))
        self.problems = problems


class DurationError(ValueError):
    """A window that is not `<n>m`, `<n>h` or `<n>d`, or longer than the log keeps."""


class SettingsError(RuntimeError):
    """The function's environment is incomplete or wrong: a deployment fault."""


class PortalAccessError(DomainError):
    """A portal link or session that cannot be used: `problem` says why (invalid, expired,
    revoked, used); the portal answers with a page that says so and nothing else."""

    kind = "portal_access"

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem
