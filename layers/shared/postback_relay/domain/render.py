"""Postback rendering: a conversion's values put into an affiliate's URL and body templates.

Every value is encoded for the place it goes: percent-encoded with nothing left safe in a URL
(so no value can add a parameter, change the path or the host), form-encoded in a form body,
JSON-escaped in a JSON body. Substitution is one pass: a value that looks like `{macro}` stays
text and is never expanded.
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from postback_relay.domain.config import FORM, JSON, MACRO, HttpMethod, PostbackSpec
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.errors import ConfigError
from postback_relay.domain.macros import BUILTIN_MACROS, builtin_values

__all__ = ["BUILTIN_MACROS", "RenderedPostback", "macro_values", "render_postback", "render_url"]

_PATH_END = re.compile(r"[?#]")


@dataclass(frozen=True)
class RenderedPostback:
    """One postback ready to send."""

    method: HttpMethod
    url: str
    body: str | None
    content_type: str | None


def macro_values(conversion: Conversion, affiliate_id: str, tracker_values: Mapping[str, str]) -> dict[str, str]:
    """Every macro's value for one conversion: the tracker's fields, then the built-in macros
    (domain.macros).

    A built-in macro always wins over a tracker field of the same name (configs refuse such
    names anyway).
    """
    values = dict(tracker_values)
    values.update(builtin_values(conversion, affiliate_id))
    return values


def _substitute(template: str, encode: Callable[[str], str], values: Mapping[str, str], field: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"the macro {{{name}}} has no value for this conversion", field=field)
        return encode(values[name])

    return MACRO.sub(one, template)


def _query_value(value: str) -> str:
    # surrogatepass: a lone surrogate (possible in JSON input) still encodes, never crashes.
    return quote(value, safe="", errors="surrogatepass")


def _path_value(value: str) -> str:
    # `.` is unreserved, so quote() keeps it; but a segment `..` would be collapsed by the HTTP
    # client and change the path. %2E means the same to the server and is never collapsed.
    return _query_value(value).replace(".", "%2E")


def _json_value(value: str) -> str:
    # Escaped for the inside of a JSON string: the template supplies the quotes.
    return json.dumps(value)[1:-1]


def render_url(template: str, values: Mapping[str, str]) -> str:
    """The URL with every macro replaced by its percent-encoded value."""
    cut = _PATH_END.search(template)
    split = cut.start() if cut else len(template)
    path = _substitute(template[:split], _path_value, values, "url")
    rest = _substitute(template[split:], _query_value, values, "url")
    return path + rest


def render_postback(spec: PostbackSpec, values: Mapping[str, str]) -> RenderedPostback:
    """The request one postback makes for these macro values (see `macro_values`).

    `{status}` is the event in this postback's words (`PostbackSpec.status_of`). Raises
    ConfigError when the template names a macro that has no value.
    """
    event = values.get("event")
    if event is not None:
        values = {**values, "status": spec.status_of(event)}
    url = render_url(spec.url_template_for(event), values)
    if spec.method is HttpMethod.GET:
        return RenderedPostback(method=spec.method, url=url, body=None, content_type=None)
    content_type = spec.content_type or FORM
    if spec.body is None:
        return RenderedPostback(method=spec.method, url=url, body=None, content_type=None)
    is_json = content_type.split(";", 1)[0].strip().lower() == JSON
    body = _substitute(spec.body, _json_value if is_json else _query_value, values, "body")
    return RenderedPostback(method=spec.method, url=url, body=body, content_type=content_type)
