"""The words a person reads, in one place: the API's refusals, the CLI's errors, the portal's.

One situation, one sentence, wherever it is met: "No affiliate 9999999 is onboarded." reads the
same from `postback affiliate get`, `postback health`, `postback deliveries` and the portal.
Add a message here when a new situation needs one, and call it from every place that meets it;
`tests/unit/cli/test_cli_messages.py` lists every command's error paths with their messages and
fails when two messages for the same situation differ.

How a message reads:
- a whole sentence (or several): a capital letter, a full stop;
- in the user's terms: the field as the user wrote it (`occurred_at`, `postback 2, url`), the
  thing they can do about it, never a library's words ("Value error,", "Input should be") or a
  Python list (`['affid', 'transid']`: `affid, transid`);
- it names what is wrong and, where it helps, what right looks like (an example).

Pure: no I/O, no imports beyond the standard library.
"""

from collections.abc import Iterable

RFC3339_EXAMPLE = "2026-11-25T12:00:00Z"
SIGNED_CONTENT = '"<timestamp>.<raw body>"'


def words(items: Iterable[object], *, limit: int = 0) -> str:
    """`a, b, c` (not `['a', 'b', 'c']`): a list as a person writes it; with `limit`, the first
    `limit` items and how many more."""
    shown = [str(item) for item in items]
    if limit and len(shown) > limit:
        return ", ".join(shown[:limit]) + f" and {len(shown) - limit} more"
    return ", ".join(shown)


def sentence(text: str) -> str:
    """`text` as a sentence: a capital first letter and a final full stop (kept: `?`, `!`, `:`)."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!:" else text + "."


# --- affiliates, test runs, deliveries: things looked up -------------------------------------


def no_affiliate(affiliate_id: str) -> str:
    return f"No affiliate {affiliate_id} is onboarded."


def no_test_run(run_id: str) -> str:
    return f"No test run {run_id} is known: check the run ID `postback test start` printed."


# --- occurred_at (contract section 2: an RFC 3339 date-time) ---------------------------------


def occurred_at_not_text() -> str:
    return f"occurred_at must be an RFC 3339 date-time string, like {RFC3339_EXAMPLE}."


def occurred_at_unreadable(detail: str) -> str:
    return f"occurred_at is not an RFC 3339 date-time like {RFC3339_EXAMPLE}: {sentence(detail)}"


def occurred_at_no_timezone() -> str:
    return f"occurred_at needs a timezone, like {RFC3339_EXAMPLE} or 2026-11-25T13:00:00+01:00."


def occurred_at_out_of_range() -> str:
    return (
        "occurred_at falls outside the years 1 to 9999 once converted to UTC: the relay writes "
        "every time in UTC, so send a time within those years."
    )


def occurred_at_leap_second() -> str:
    return (
        "occurred_at has a leap second (:60), which the relay cannot keep: send the second before "
        "it (:59) or the one after."
    )


def occurred_at_hour_24() -> str:
    return "occurred_at has the hour 24: write 00:00 of the next day instead."


def occurred_at_offset(offset: str) -> str:
    return (
        f"occurred_at has the offset {offset}, out of range: an offset is Z or from -23:59 to +23:59, "
        "hours below 24 and minutes below 60."
    )


# --- a repeat whose content differs (contract section 2) --------------------------------------


def differing_repeat(fields: Iterable[str]) -> str:
    return (
        f"This transaction_id and event were already taken with another {words(fields)}: the first "
        "conversion stands and nothing was changed. A correction needs its own transaction_id."
    )


# --- the conversion request's signature (contract section 2) ----------------------------------

SIGNING_RULE = (
    f"Sign {SIGNED_CONTENT} with HMAC-SHA256 and the shared secret, and send "
    "X-Postback-Timestamp: <timestamp> (unix seconds) and X-Postback-Signature: v1=<hex digest>."
)


def signature_header_missing(header: str) -> str:
    return f"The {header} header is missing. {SIGNING_RULE}"


def signature_timestamp_malformed() -> str:
    return f"X-Postback-Timestamp must be unix seconds, an integer like 1795608005. {SIGNING_RULE}"


def signature_timestamp_stale(tolerance_s: int) -> str:
    return (
        f"X-Postback-Timestamp is more than {tolerance_s} seconds away from the relay's clock: sign "
        f"each request when it is sent, with the current time. {SIGNING_RULE}"
    )


def signature_malformed() -> str:
    return (
        "X-Postback-Signature holds no v1=<hex digest>: it must be v1= followed by the 64 "
        f"lower-case hex digits of the HMAC-SHA256. {SIGNING_RULE}"
    )


def signature_mismatch() -> str:
    return (
        "X-Postback-Signature does not match this request: the HMAC-SHA256 must be over "
        f"{SIGNED_CONTENT}, the timestamp exactly as sent in X-Postback-Timestamp, a full stop, then "
        "the body byte for byte as sent, with the shared secret."
    )


def signature_over_body_alone() -> str:
    return (
        "X-Postback-Signature is an HMAC-SHA256 of the body alone: sign "
        f"{SIGNED_CONTENT}, the timestamp sent in X-Postback-Timestamp, a full stop, then the body."
    )


def signature_without_dot() -> str:
    return (
        "X-Postback-Signature is an HMAC-SHA256 of the timestamp and the body without the full stop "
        f"between them: sign {SIGNED_CONTENT}."
    )


def signing_secret_missing() -> str:
    return "The relay has no signing secret configured: it refuses every request until one is set."


# --- a validation library's words, in ours ---------------------------------------------------

_LIBRARY_PREFIXES = (
    ("Value error, ", ""),
    ("Assertion failed, ", ""),
    ("Input should be ", "Must be "),
    ("String should have ", "Must have "),
    ("List should have ", "Must have "),
    ("Dictionary should have ", "Must have "),
    ("Decimal input should be ", "Must be "),
)
_BY_KIND = {
    "missing": "Required: this field is missing.",
    "extra_forbidden": "Unknown field: leave it out.",
    "datetime_type": f"Must be an RFC 3339 date-time string, like {RFC3339_EXAMPLE}.",
}


def validation_message(kind: str, message: str) -> str:
    """One problem a validation library (pydantic) reported, as our sentence: its kind (`type`)
    and its text (`msg`) in, no "Value error," or "Input should be" out."""
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if kind in ("datetime_parsing", "datetime_from_date_parsing"):
        detail = message.split(", ", 1)[1] if ", " in message else message
        return f"Not an RFC 3339 date-time like {RFC3339_EXAMPLE}: {sentence(detail)}"
    for prefix, ours in _LIBRARY_PREFIXES:
        if message.startswith(prefix):
            message = ours + message.removeprefix(prefix)
            break
    return sentence(message)


# --- what an attempt to deliver a postback saw ------------------------------------------------

_ATTEMPT_ERRORS = {
    "timeout": "no answer in time",
    "connection_error": "could not connect",
    "unsafe_url": "not called: the address is refused",
    "circuit_open": "not called: the endpoint's circuit is open after failures in a row",
}


def attempt_seen(number: int, of: int, *, status: int | None, error_kind: str | None, detail: str | None) -> str:
    """`attempt 3 of 8: connection refused`: what one attempt saw, in words. `detail` is the
    sender's sentence (`127.0.0.1: connection refused`), used for the words of a failed connection."""
    if status is not None:
        seen = f"HTTP {status}"
        if error_kind == "unexpected_body":
            seen += " without the expected body"
        elif error_kind is None:
            seen += ", delivered"
    elif error_kind == "connection_error" and detail:
        seen = detail.rsplit(": ", 1)[-1]
    else:
        seen = _ATTEMPT_ERRORS.get(error_kind or "", error_kind or "no answer")
    return f"attempt {number} of {of}: {seen}"


def transport_words(error: BaseException) -> str:
    """The words for a connection that failed, from the error chain (ConnectionRefusedError ->
    `connection refused`), never the library's class name."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for kind, words_for in _TRANSPORT_WORDS:
            if isinstance(current, kind):
                return words_for
        nested = [arg for arg in current.args if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        current = (
            current.__cause__
            or current.__context__
            or (nested[0] if nested else None)
            or (reason if isinstance(reason, BaseException) else None)
        )
    return "could not connect"


_TRANSPORT_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset by the server"),
    (ConnectionAbortedError, "connection aborted"),
    (TimeoutError, "no answer in time"),
)
