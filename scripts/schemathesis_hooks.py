"""Schemathesis hooks for scripts/fuzz.sh: hostile text in every body.

Generated bodies follow the schema, so on their own they almost never hold
the strings that broke the server before (a NUL in a login answered 500).
Each hook below keeps the generated value or swaps one of its strings, or
one of its object keys, for a hostile one: NUL, a lone surrogate (sent as
a JSON `\\ud800` escape, as Python's json module writes it) or 4-byte
characters. The server must answer 4xx (422 naming the field) or 2xx for
the 4-byte text, never 5xx.
"""

import schemathesis
from hypothesis import strategies as st

HOSTILE = [
    "a\x00b",
    "\x00",
    "\ud800",
    "x\udfffy",
    "\udbff\udbff",
    "Ship \U0001f680 \U0001d573\U0001d58a\U0001d591\U0001d591\U0001d594",
    "\U0002070e" * 8,
    "emoji \U0001f600 and a NUL \x00",
]


def _string_slots(value, path=()):
    """Every place a string sits in `value`: (path, is_key)."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,), True
            yield from _string_slots(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_slots(item, path + (index,))


def _replaced(value, path, is_key, hostile):
    if not path:
        return hostile
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if is_key and not rest:
            copy[hostile] = copy.pop(head)
        else:
            copy[head] = _replaced(value[head], rest, is_key, hostile)
        return copy
    copy = list(value)
    copy[head] = _replaced(value[head], rest, is_key, hostile)
    return copy


def _poisoned(value):
    slots = list(_string_slots(value))
    if not slots:
        return st.just(value)
    poisoned = st.tuples(st.sampled_from(slots), st.sampled_from(HOSTILE)).map(
        lambda pick: _replaced(value, pick[0][0], pick[0][1], pick[1])
    )
    # Half the examples stay as generated, so valid requests still run.
    return st.one_of(st.just(value), poisoned)


@schemathesis.hook
def flatmap_body(ctx, body):
    return _poisoned(body)
