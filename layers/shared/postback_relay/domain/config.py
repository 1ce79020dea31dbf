"""The affiliate's postback configuration (contract section 3), loaded from YAML or JSON.

Validation happens here, once, when a config is saved or read back: an unknown macro, a URL
that could reach a private address, a macro placed where it could change the host, a body
template that would not stay valid JSON: all are refused with the field at fault.

Whether loopback URLs are allowed (the local stack only) comes from the pydantic validation
context, key "allow_loopback": `AffiliateConfig.model_validate(data, context={"allow_loopback": True})`.
"""

import base64
import binascii
import io
import json
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from postback_relay.domain.addresses import check_url
from postback_relay.domain.errors import ConfigError, FieldProblems, UnsafeUrlError
from postback_relay.domain.events import REVERSALS, Event
from postback_relay.domain.jsontext import no_duplicate_keys, refuse_constant
from postback_relay.domain.macros import BUILTIN_MACROS as BUILTIN_MACROS  # the names the configs may use
from postback_relay.domain.messages import words
from postback_relay.domain.presets import PRESETS, Preset, preset_query_text
from postback_relay.domain.tracker import TrackerStructure

MACRO = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CONTENT_TYPES = (FORM, JSON)
MAX_CONFIG_CHARS = 65536
AFFILIATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
MAX_STATUS_CHARS = 64
_EVENT_NAMES = frozenset(event.value for event in Event)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


def _allow_loopback(info: ValidationInfo) -> bool:
    context = info.context
    return bool(context.get("allow_loopback", False)) if isinstance(context, Mapping) else False


def macro_names(template: str) -> list[str]:
    """The macros a template uses, in order, repeats included."""
    return MACRO.findall(template)


def _sample(template: str) -> str:
    return MACRO.sub("x", template)


def check_url_template(template: str, *, allow_loopback: bool = False) -> None:
    """Raise ValueError when a postback URL template is unsafe or ill-formed.

    Macros may sit in the path and in query values only: the host, port, scheme and parameter
    names are fixed by the config, so that no conversion can point a postback elsewhere.
    """
    scheme, sep, after = template.partition("://")
    if not sep:
        raise ValueError("the URL must start with http:// or https://")
    authority = re.split(r"[/?#]", after, maxsplit=1)[0]
    if "{" in scheme or "}" in scheme or "{" in authority or "}" in authority:
        raise ValueError("macros are not allowed in the scheme, host or port, only in the path and query values")
    leftover = MACRO.sub("", template)
    if "{" in leftover or "}" in leftover:
        raise ValueError("a '{' or '}' that is not part of a {macro}: a macro is a name in braces, like {clickid}")
    query = template.partition("?")[2].partition("#")[0]
    for piece in query.split("&"):
        name = piece.partition("=")[0]
        if MACRO.search(name):
            raise ValueError(f"a macro cannot be a parameter name ({name!r}), only a parameter value")
    sample = _sample(template)
    try:
        check_url(sample, allow_loopback=allow_loopback)
    except UnsafeUrlError as exc:
        # The reason is the sample's (macros filled with `x`); the person wrote the template.
        raise ValueError(exc.message.replace(repr(sample), repr(template), 1)) from exc


def _check_form_body(body: str) -> None:
    for piece in body.split("&"):
        name = piece.partition("=")[0]
        if MACRO.search(name):
            raise ValueError(f"a macro cannot be a form field name ({name!r}), only a value")


def _check_json_body(body: str) -> None:
    # Each macro becomes a bare token: the template parses only if every macro sits inside a
    # JSON string, which is where a JSON-escaped value cannot change the document's shape.
    tokens = {f"MACRO{i}TOKEN" for i in range(len(macro_names(body)))}
    counter = iter(range(len(tokens)))
    probe = MACRO.sub(lambda _m: f"MACRO{next(counter)}TOKEN", body)
    try:
        document = json.loads(probe)
    except ValueError as exc:
        raise ValueError(
            'the JSON body template is not valid JSON, or a macro sits outside a JSON string (write "{amount}", '
            f"quotes included): {exc}"
        ) from exc

    def keys_with_macros(node: object) -> bool:
        if isinstance(node, dict):
            return any(any(t in key for t in tokens) or keys_with_macros(v) for key, v in node.items())
        if isinstance(node, list):
            return any(keys_with_macros(v) for v in node)
        return False

    if keys_with_macros(document):
        raise ValueError("a macro cannot be a JSON key, only (part of) a string value")


def _media_type(content_type: str | None) -> str:
    return (content_type or FORM).split(";", 1)[0].strip().lower()


class SelfService(StrEnum):
    """What the affiliate's portal may do with its config (contract section 7)."""

    APPROVE = "approve"  # a change waits for ops (`postback changes approve|reject`)
    DIRECT = "direct"  # a change applies at once
    OFF = "off"  # the portal is read-only


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"


class ExpectedAnswer(BaseModel):
    """What the affiliate's server must answer for a postback to count as delivered.

    Some trackers answer 200 with `success=false` in the body.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    status: tuple[int, ...] = ()  # empty: any 2xx
    body_contains: str | None = Field(default=None, max_length=256)

    @field_validator("status", mode="before")
    @classmethod
    def _one_status_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, int) else value

    @field_validator("status")
    @classmethod
    def _status_codes(cls, status: tuple[int, ...]) -> tuple[int, ...]:
        for code in status:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100 to 599)")
        return status

    @field_validator("body_contains")
    @classmethod
    def _body_contains_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("leave body_contains out rather than empty")
        return value


class PostbackSpec(BaseModel):
    """One postback: which events (and offers) fire it, and what to call."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True, defer_build=True)

    events: tuple[Event, ...] = Field(min_length=1)
    url: str = Field(min_length=1, max_length=2048)
    offers: tuple[str, ...] | None = None  # None: every offer
    method: HttpMethod = HttpMethod.GET
    body: str | None = Field(default=None, max_length=4096)  # POST body template, macros allowed
    content_type: str | None = None  # default for POST: application/x-www-form-urlencoded
    expect: ExpectedAnswer | None = None
    # The events in the words of the affiliate's tracker, for `{status}` (default: the event's
    # name, or its preset's word).
    statuses: dict[Event, str] | None = None
    # A tracker preset (domain.presets): `url` is the tracker's endpoint and `click_id` the
    # tracker field holding the tracker's click ID; the preset writes the query.
    preset: str | None = None
    click_id: str | None = None

    def matches(self, event: Event, offer_id: str) -> bool:
        return event in self.events and (self.offers is None or offer_id in self.offers)

    def status_of(self, event: str) -> str:
        """`{status}` for this event: its word in `statuses`, else its preset's, else the
        event's own name."""
        if event not in _EVENT_NAMES:
            return event
        preset = PRESETS.get(self.preset or "")
        default = preset.statuses.get(Event(event), event) if preset is not None else event
        return (self.statuses or {}).get(Event(event), default)

    def url_template_for(self, event: str | None) -> str:
        """The URL template this postback renders for `event`: its `url`, or, with a preset,
        the endpoint and the query the preset writes for that event (on the tracker's
        reversal endpoint for a reversal, when it has one)."""
        preset = PRESETS.get(self.preset or "")
        if preset is None or self.click_id is None:
            return self.url
        kind = Event(event) if event in _EVENT_NAMES else Event.SALE
        base = self.url
        if kind in REVERSALS and preset.reversal_path is not None:
            parts = urlsplit(base)
            base = urlunsplit((parts.scheme, parts.netloc, preset.reversal_path, parts.query, ""))
        query = preset_query_text(preset.query_for(kind), self.click_id)
        return f"{base}{'&' if '?' in base else '?'}{query}"

    @property
    def expected_answer(self) -> ExpectedAnswer | None:
        """What counts as delivered: `expect`, else what the preset's tracker answers on success."""
        preset = PRESETS.get(self.preset or "")
        if self.expect is None and preset is not None and preset.expect_body is not None:
            return ExpectedAnswer(body_contains=preset.expect_body)
        return self.expect

    @field_validator("statuses")
    @classmethod
    def _status_words(cls, statuses: dict[Event, str] | None) -> dict[Event, str] | None:
        for event, word in (statuses or {}).items():
            if not word or len(word) > MAX_STATUS_CHARS or not word.isprintable():
                raise FieldProblems(
                    [(event.value, f"a status word is 1 to {MAX_STATUS_CHARS} printable characters, like `lead`")]
                )
        return statuses

    @field_validator("events", mode="before")
    @classmethod
    def _one_event_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("events")
    @classmethod
    def _events_once_each(cls, events: tuple[Event, ...]) -> tuple[Event, ...]:
        if len(set(events)) != len(events):
            raise ValueError("an event is listed twice")
        return events

    @field_validator("url")
    @classmethod
    def _url_is_safe(cls, url: str, info: ValidationInfo) -> str:
        check_url_template(url, allow_loopback=_allow_loopback(info))
        return url

    @field_validator("offers", mode="before")
    @classmethod
    def _one_offer_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value

    @field_validator("offers")
    @classmethod
    def _offers_named(cls, offers: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if offers is None:
            return None
        if not offers:
            raise ValueError("leave offers out to match every offer; an empty list would match none")
        if any(not offer.strip() for offer in offers):
            raise ValueError("an offer ID is empty")
        return offers

    @field_validator("method", mode="before")
    @classmethod
    def _method_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _preset_fits(self) -> Self:
        if self.preset is None:
            if self.click_id is not None:
                raise FieldProblems([("click_id", "click_id goes with a preset: name the preset, or leave it out")])
            return self
        preset = PRESETS.get(self.preset)
        if preset is None:
            raise FieldProblems([("preset", f"`{self.preset}` is not a preset: use one of {', '.join(PRESETS)}")])
        problems = _preset_problems(self, preset)
        if problems:
            raise FieldProblems(problems)
        return self

    @model_validator(mode="after")
    def _body_fits_method(self) -> Self:
        problems: list[tuple[str, str]] = []
        if self.method is HttpMethod.GET:
            if self.body is not None:
                problems.append(("body", "a GET postback has no body: use method POST"))
            if self.content_type is not None:
                problems.append(("content_type", "a GET postback has no content type: use method POST"))
        else:
            media = _media_type(self.content_type)
            if media not in CONTENT_TYPES:
                problems.append(("content_type", f"must be {FORM} (the default) or {JSON}"))
            elif self.body is not None:
                try:
                    _check_json_body(self.body) if media == JSON else _check_form_body(self.body)
                except ValueError as exc:
                    problems.append(("body", str(exc)))
        if problems:
            raise FieldProblems(problems)
        return self


def _preset_problems(spec: PostbackSpec, preset: Preset) -> list[tuple[str, str]]:
    """What a preset postback gets wrong: each (field, reason)."""
    problems: list[tuple[str, str]] = []
    if spec.click_id is None:
        problems.append(
            ("click_id", f"a {preset.name} postback names the tracker field holding {preset.tracker}'s click ID")
        )
    if spec.method is not HttpMethod.GET or spec.body is not None or spec.content_type is not None:
        problems.append(
            (
                "method",
                f"a {preset.name} postback is a GET with {preset.tracker}'s query: "
                "leave out method, body and content_type",
            )
        )
    if MACRO.search(spec.url):
        problems.append(
            (
                "url",
                f"give {preset.tracker}'s endpoint without macros (like {preset.example_endpoint}): "
                "the preset writes the query",
            )
        )
    written = {name for name, _ in preset.query + (preset.reversal_query or ())}
    clash = sorted(written & {piece.partition("=")[0] for piece in urlsplit(spec.url).query.split("&") if piece})
    if clash:
        problems.append(("url", f"the {preset.name} preset writes {clash} itself: leave them out of the url"))
    for event in spec.events:
        message = preset.refusal_message(event)
        if message is not None:
            problems.append(("events", message))
    return problems


class AffiliateConfig(BaseModel):
    """One affiliate's postback configuration, for all offers."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True, defer_build=True)

    affiliate_id: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=128)
    enabled: bool = True
    tracker: TrackerStructure = TrackerStructure()
    postbacks: tuple[PostbackSpec, ...] = Field(min_length=1, max_length=20)
    test_link: str | None = Field(default=None, max_length=2048)
    # Optional: sign postbacks with Standard Webhooks headers. Stored encrypted at rest in
    # DynamoDB; never logged, never shown by `affiliate get` (masked).
    signing_secret: str | None = Field(default=None, min_length=24, max_length=128)
    # The portal's rights over this config; left out, `approve` (the default).
    self_service: SelfService | None = None

    @property
    def portal_mode(self) -> SelfService:
        return self.self_service or SelfService.APPROVE

    def postbacks_for(self, event: Event, offer_id: str) -> list[tuple[int, PostbackSpec]]:
        """The postbacks this conversion fires, with their index in the config."""
        return [(i, p) for i, p in enumerate(self.postbacks) if p.matches(event, offer_id)]

    @property
    def macros(self) -> frozenset[str]:
        """Every macro this affiliate's postbacks may use."""
        return BUILTIN_MACROS | frozenset(self.tracker.fields)

    @field_validator("affiliate_id")
    @classmethod
    def _affiliate_id_shape(cls, affiliate_id: str) -> str:
        if not AFFILIATE_ID.fullmatch(affiliate_id):
            raise ValueError(
                "the affiliate's ID on the network (e.g. 1234567): letters, digits, '.' and '-' only; "
                "'_' would end it inside a PPS tracker"
            )
        return affiliate_id

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("the name cannot be blank")
        return name.strip()

    @field_validator("test_link")
    @classmethod
    def _test_link_is_safe(cls, test_link: str | None, info: ValidationInfo) -> str | None:
        if test_link is not None:
            try:
                check_url(test_link, allow_loopback=_allow_loopback(info))
            except UnsafeUrlError as exc:
                raise ValueError(exc.message) from exc
        return test_link

    @field_validator("signing_secret")
    @classmethod
    def _secret_format(cls, secret: str | None) -> str | None:
        if secret is not None:
            signing_key(secret)
        return secret

    @field_validator("tracker")
    @classmethod
    def _fields_not_builtin(cls, tracker: TrackerStructure) -> TrackerStructure:
        clashes = sorted(set(tracker.fields) & BUILTIN_MACROS)
        if clashes:
            raise FieldProblems(
                [("fields", f"{words(clashes)} clash with built-in macros of the same name: rename the field(s)")]
            )
        return tracker

    @field_validator("postbacks")
    @classmethod
    def _macros_known(cls, postbacks: tuple[PostbackSpec, ...], info: ValidationInfo) -> tuple[PostbackSpec, ...]:
        tracker = info.data.get("tracker")
        if not isinstance(tracker, TrackerStructure):
            return postbacks  # the tracker's own error is reported; macros cannot be judged without it
        templates = [{"url": postback.url, "body": postback.body} for postback in postbacks]
        problems = [
            (
                f"{index}.click_id",
                f"`{postback.click_id}` is not a field of your tracker: use one of {list(tracker.fields)}",
            )
            for index, postback in enumerate(postbacks)
            if postback.click_id is not None and postback.click_id not in tracker.fields
        ]
        problems += unknown_macro_problems(templates, tracker.fields)
        if problems:
            raise FieldProblems(problems)
        return postbacks


def unknown_macro_problems(postbacks: object, tracker_fields: object) -> list[tuple[str, str]]:
    """Every unknown macro of every postback's url and body, as (`<index>.url`, reason): read
    from the raw config too, so that they are all reported with the config's other problems,
    not after those are fixed. Tracker fields that are not a list of names: nothing to judge."""
    if not isinstance(postbacks, list | tuple) or not isinstance(tracker_fields, list | tuple):
        return []
    fields = [str(field) for field in tracker_fields]
    allowed = BUILTIN_MACROS | frozenset(fields)
    problems: list[tuple[str, str]] = []
    for index, postback in enumerate(postbacks):
        if not isinstance(postback, Mapping):
            continue
        for name in ("url", "body"):
            template = postback.get(name)
            unknown = (
                list(dict.fromkeys(m for m in macro_names(template) if m not in allowed))
                if isinstance(template, str)
                else []
            )
            if unknown:
                named = words(f"{{{macro}}}" for macro in unknown)
                problems.append(
                    (
                        f"{index}.{name}",
                        f"unknown macro{'s' if len(unknown) > 1 else ''} {named}: use the tracker fields "
                        f"{words(fields)} or the built-in macros {words(sorted(BUILTIN_MACROS))}",
                    )
                )
    return problems


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after an optional `whsec_` prefix.

    Raises ValueError when the secret is not 24 to 64 bytes of base64.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            "a signing secret is whsec_ followed by base64 of 24 to 64 random bytes (e.g. `openssl rand -base64 32`)"
        ) from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the signing secret decodes to {len(key)} bytes; use 24 to 64 random bytes")
    return key


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(config)"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    errors = exc.errors(include_url=False)
    deeper = {tuple(error["loc"][:i]) for error in errors for i in range(len(error["loc"]))}
    for error in errors:
        if error["type"] == "too_short" and tuple(error["loc"]) in deeper:
            continue  # a list whose items failed is also "too short": the items' errors say it all
        cause = error.get("ctx", {}).get("error")
        loc = tuple(error["loc"])
        if isinstance(cause, FieldProblems):
            found.extend((_dotted((*loc, *path.split("."))), reason) for path, reason in cause.problems)
            continue
        found.append((_dotted(loc), _in_words(error)))
    return found


# What a list of each key holds, for "at least one postback is needed".
_ITEM_NOUNS = {
    "postbacks": "postback",
    "events": "event",
    "fields": "field",
    "offers": "offer",
    "status": "status code",
}


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a config accepts at the mapping `loc` points into (list indices skipped)."""
    model: type[BaseModel] = AffiliateConfig
    for part in loc:
        if isinstance(part, int):
            continue
        models: dict[str, type[BaseModel]] = {
            "tracker": TrackerStructure,
            "postbacks": PostbackSpec,
            "expect": ExpectedAnswer,
        }
        nested = models.get(part)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _key(error: ErrorDetails) -> str:
    return str(error["loc"][-1]) if error["loc"] else ""


def _ctx(error: ErrorDetails) -> dict[str, Any]:
    return error.get("ctx") or {}


def _unknown_key(error: ErrorDetails) -> str:
    import difflib  # only on a refusal: not a cold start's cost

    loc, key = tuple(error["loc"]), _key(error)
    close = difflib.get_close_matches(key, _keys_at(loc[:-1]), n=1, cutoff=0.6)
    known = ", ".join(_keys_at(loc[:-1]))
    return f"unknown key `{key}`" + (f" (did you mean `{close[0]}`?)" if close else f" (known keys: {known})")


def _too_few(error: ErrorDetails) -> str:
    noun, least = _ITEM_NOUNS.get(_key(error), "item"), _ctx(error).get("min_length", 1)
    return f"at least one {noun} is needed" if least == 1 else f"at least {least} {noun}s are needed"


def _too_many(error: ErrorDetails) -> str:
    noun, ctx = _ITEM_NOUNS.get(_key(error), "item"), _ctx(error)
    return f"at most {ctx.get('max_length')} {noun}s are allowed, not {ctx.get('actual_length')}"


def _not_a_list(error: ErrorDetails) -> str:
    return f"must be a list, like [{'sale, rebill' if _key(error) == 'events' else 'a, b'}]"


def _not_one_of(error: ErrorDetails) -> str:
    expected = str(_ctx(error).get("expected", "")).replace("'", "")
    return f"`{error.get('input')}` is not one of {expected}"


_NOT_TEXT = "must be text (a number or a word, not a list or a mapping)"
_NOT_BOOL = "must be true or false"
_NOT_WHOLE = "must be a whole number"
_NOT_MAPPING = "must be a mapping of keys (key: value lines)"
# Pydantic's error types, each in the words of someone writing the config file.
_WORDS: dict[str, Callable[[ErrorDetails], str]] = {
    "extra_forbidden": _unknown_key,
    "missing": lambda error: f"`{_key(error)}` is required",
    "too_short": _too_few,
    "too_long": _too_many,
    "string_too_short": lambda _: "cannot be empty",
    "string_too_long": lambda error: f"is longer than {_ctx(error).get('max_length')} characters",
    "string_type": lambda _: _NOT_TEXT,
    "bool_type": lambda _: _NOT_BOOL,
    "bool_parsing": lambda _: _NOT_BOOL,
    "int_type": lambda _: _NOT_WHOLE,
    "int_parsing": lambda _: _NOT_WHOLE,
    "int_from_float": lambda _: _NOT_WHOLE,
    "tuple_type": _not_a_list,
    "list_type": _not_a_list,
    "model_type": lambda _: _NOT_MAPPING,
    "model_attributes_type": lambda _: _NOT_MAPPING,
    "dict_type": lambda _: _NOT_MAPPING,
    "enum": _not_one_of,
}


def _in_words(error: ErrorDetails) -> str:
    """Pydantic's message for one error, in the words of someone writing the config file
    (a validator's own message as it wrote it)."""
    words = _WORDS.get(error["type"])
    return words(error) if words is not None else str(error["msg"]).removeprefix("Value error, ")


def parse_config(data: Mapping[str, object], *, allow_loopback: bool = False) -> AffiliateConfig:
    """Validate a config read from a file or from storage. Raises ConfigError naming every bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError("the config must be a mapping of fields (affiliate_id, name, postbacks...)", field="(config)")
    try:
        return AffiliateConfig.model_validate(dict(data), context={"allow_loopback": allow_loopback})
    except ValidationError as exc:
        problems = _problems(exc)
        # A postback list with another fault is not judged on its macros: judge them on the raw
        # config, so that one answer names every problem of the file.
        tracker = data.get("tracker")
        fields = tracker.get("fields") if isinstance(tracker, Mapping) else None
        reported = {path for path, _ in problems}
        problems += [
            (path, reason)
            for path, reason in (
                (f"postbacks.{where}", why) for where, why in unknown_macro_problems(data.get("postbacks"), fields)
            )
            if path not in reported
        ]
        problems = problems or [("(config)", "the config is invalid")]
        field, reason = problems[0]
        raise ConfigError(reason, field=field, errors=problems) from exc
    except RecursionError as exc:
        raise ConfigError("the config is nested too deeply", field="(config)") from exc


def _load_json(text: str) -> object:
    return json.loads(text, object_pairs_hook=no_duplicate_keys, parse_constant=refuse_constant)


def _load_yaml(text: str, source: str | None = None) -> object:
    # Imported here: PyYAML is for the config script only; the Lambda layer does not ship it
    # and a cold start should not pay for it.
    import yaml
    from yaml.composer import ComposerError
    from yaml.constructor import ConstructorError
    from yaml.nodes import MappingNode, Node

    class StrictLoader(yaml.SafeLoader):
        """Safe YAML without aliases (no billion laughs) and without silently repeated keys."""

        def compose_node(self, parent: Node | None, index: int) -> Node | None:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, "aliases (*name) are not allowed in a config", event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable: the base class refuses it with its own message
                if duplicate:
                    raise ConstructorError(None, None, f"the key {key!r} appears twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    stream = io.StringIO(text)
    stream.name = source or "the config"  # what PyYAML's error marks name
    try:
        return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc


def load_config_text(text: str, *, allow_loopback: bool = False, source: str | None = None) -> AffiliateConfig:
    """Read a config file's text, JSON or YAML. Raises ConfigError naming every bad field.

    `source` (the file's name) is named in the reason when the text is not JSON or YAML.

    JSON is tried first and needs nothing beyond the standard library (this is what runs in
    Lambda); YAML needs PyYAML, present wherever the config script runs.
    """
    if not isinstance(text, str):
        raise ConfigError("the config must be text", field="(file)")
    if len(text) > MAX_CONFIG_CHARS:
        raise ConfigError(f"the config is longer than {MAX_CONFIG_CHARS} characters", field="(file)")
    if not text.strip():
        raise ConfigError("the config is empty", field="(file)")
    try:
        data = _load_json(text)
    except (ValueError, RecursionError) as json_error:
        try:
            data = _load_yaml(text, source)
        except ImportError:
            raise ConfigError(
                f"not valid JSON ({json_error}); YAML is read by the config script only", field="(file)"
            ) from None
        except (ValueError, RecursionError) as yaml_error:
            shown = json_error if text.lstrip().startswith(("{", "[")) else yaml_error
            what = source or "the file"
            raise ConfigError(f"{what} is neither valid JSON nor valid YAML: {shown}", field="(file)") from None
    if not isinstance(data, Mapping) or not all(isinstance(key, str) for key in data):
        raise ConfigError("the config must be a mapping of fields (affiliate_id, name, postbacks...)", field="(config)")
    return parse_config(data, allow_loopback=allow_loopback)


def dump_config(config: AffiliateConfig) -> dict[str, object]:
    """The config as plain JSON-ready data; `parse_config` reads it back to an equal config."""
    return config.model_dump(mode="json", exclude_none=True)
