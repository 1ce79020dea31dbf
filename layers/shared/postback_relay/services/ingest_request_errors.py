"""The ingest request's validation errors, apart from the service so that the handler can
register their HTTP answer at import without importing the service (its domain and models
load on the first request; see README, Benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postback_relay.domain.errors import DomainError

MAX_FIELD_ERRORS = 100
BODY_FIELD = "body"  # the `field` of an error about the body as a whole


@dataclass(frozen=True)
class FieldError:
    """One problem with the request: `field` is a dotted path like `conversions.3.amount`."""

    field: str
    message: str


class InvalidConversionRequest(DomainError):
    """The request body is not one valid conversion or a valid batch: nothing is taken."""

    kind = "invalid_request"

    def __init__(self, errors: Sequence[FieldError]) -> None:
        shown = list(errors[:MAX_FIELD_ERRORS])
        if len(errors) > MAX_FIELD_ERRORS:
            # A hostile body can hold tens of thousands of errors; the answer must stay small.
            shown.append(FieldError(BODY_FIELD, f"{len(errors) - MAX_FIELD_ERRORS} more errors not shown."))
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in shown))
        self.errors: tuple[FieldError, ...] = tuple(shown)
