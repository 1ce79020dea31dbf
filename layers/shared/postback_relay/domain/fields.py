"""Config field paths as people read them: the config script's refusals, the portal's field
messages and the change history's diff all name a field the same way."""

import itertools

# A list in the config, and what one of its items is called: `postbacks.0.url` is shown to
# people as "postback 1, url", as the test verdict counts them ("postback 1").
_ITEM_NAMES = {"postbacks": "postback", "events": "event", "fields": "field", "offers": "offer", "status": "status"}


def human_field(path: str) -> str:
    """A config field path as people count: list items from 1, named by what they are."""
    segments: list[str] = []
    for part in path.split("."):
        if part.isdigit() and segments and segments[-1] in _ITEM_NAMES:
            segments[-1] = f"{_ITEM_NAMES[segments[-1]]} {int(part) + 1}"
        else:
            segments.append(part)
    shown = segments[0] if segments else path
    for previous, segment in itertools.pairwise(segments):
        shown += (", " if previous[-1:].isdigit() else ".") + segment
    return shown
