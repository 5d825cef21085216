"""Phone and computer-use agents' actions: the points they click, press, drag and swipe.

Qwen's agent cookbooks give the model a ``mobile_use`` or ``computer_use`` tool
(QwenLM/Qwen2.5-VL and QwenLM/Qwen3-VL ``cookbooks/utils/agent_function_call.py``) and
read its answer as a Hermes tool call (QwenLM/Qwen-Agent
``qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py``)::

    <tool_call>
    {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [639, 1095]}}
    </tool_call>

``coordinate`` is in the family's usual space, which :func:`grounding.parse` applies:
pixels of the resized picture for Qwen2.5-VL (its cookbook tells the model the screen's
resolution is the ``smart_resize`` size), 0-1000 for Qwen3-VL and Qwen3.5 (its
computer-use cookbook declares a 1000x1000 screen; its mobile one 999x999 and divides by
999: 0.1 % apart, under a pixel near the top left of a phone screenshot, 3 px at the far
edge of a 3120 px one).

What is read: every complete JSON object with a string ``action`` and a ``coordinate``
and/or ``coordinate2`` of two numbers (a list, or a string such as ``"(639, 1095)"``),
inside ``<tool_call>`` tags or not, directly or as the ``arguments`` of a call, and also
when ``arguments`` is a JSON string (OpenAI-style ``tool_calls``, Qwen-Agent's
``function_call``). The tool's name does not matter. Actions without coordinates
(``type``, ``key``, ``wait``, ``terminate``, ``answer``) give nothing.

Each coordinate is a point whose label names the action, plus its ``text`` argument if
it has one (``type: hello``). A two-point action (``swipe``, a ``left_click_drag`` with
both) gives two points labelled ``"<action> start"`` and ``"<action> end"``, in that
order: every viewer then shows both ends without knowing about actions, and the
inspector lists them as two rows. A ``left_click_drag`` with ``coordinate`` alone (the
cookbooks' drag from where the cursor is) is one point, where the drag ends.
"""

from __future__ import annotations

import json
import re

from grounding.json_format import objects_at_keys
from grounding.raw import NUMBER_PATTERN, NUMBER_RE, RawGrounding, list_spans, numbers_of, parse_number

COORDINATE_KEYS: tuple[str, ...] = ("coordinate", "coordinate2")
# Also escaped, as inside a JSON string of arguments: \"coordinate\": [1, 2]; followed by a whole pair or a
# short string, so that a cut-off or unrelated value costs no decoding.
_KEY_RE = re.compile(
    rf"""\\?["']coordinate2?\\?["']\s*:\s*(?:\[\s*{NUMBER_PATTERN}\s*,\s*{NUMBER_PATTERN}\s*\]|\\?["'][^"'\\\n]{{0,60}}\\?["'])"""
)
_MAX_DEPTH = 6
_MAX_STRING = 3000  # longest "arguments" string decoded


def parse_agent_calls(text: str) -> list[RawGrounding]:
    """Every point of every complete agent action in ``text``, in order."""
    if "coordinate" not in text:
        return []
    groundings: list[RawGrounding] = []
    for obj, span, block in objects_at_keys(text, _KEY_RE, accept=lambda found: bool(actions_in(found))):
        points = [
            (label, values, action["action"].strip()) for action in actions_in(obj) for label, values in _points(action)
        ]
        for (label, values, action), own in zip(points, list_spans(text, span, [v for _, v, _ in points]), strict=True):
            groundings.append(RawGrounding(label, "point", values, own, block, "agent", None, action))
    return groundings


def actions_in(value: object, depth: int = 0) -> list[dict]:
    """The action objects (a string ``action`` and a coordinate) in a decoded value, in order."""
    if depth > _MAX_DEPTH:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if not (stripped.startswith("{") and "coordinate" in stripped and len(stripped) <= _MAX_STRING):
            return []
        try:
            value = json.loads(stripped)
        except (ValueError, RecursionError):
            return []
    if isinstance(value, list):
        return [a for v in value for a in actions_in(v, depth + 1)]
    if not isinstance(value, dict):
        return []
    action = value.get("action")
    if isinstance(action, str) and action.strip() and any(_pair(value.get(k)) for k in COORDINATE_KEYS):
        return [value]
    return [a for v in value.values() for a in actions_in(v, depth + 1)]


def _points(action: dict) -> list[tuple[str, tuple[float, float]]]:
    """``(label, (x, y))`` for each coordinate of one action."""
    name = " ".join(action["action"].split())
    text = action.get("text")
    said = f": {' '.join(text.split())}" if isinstance(text, str) and text.strip() else ""
    present = [(key, pair) for key in COORDINATE_KEYS if (pair := _pair(action.get(key))) is not None]
    if len(present) == 1:
        return [(name + said, present[0][1])]
    return [(f"{name} {'start' if key == 'coordinate' else 'end'}{said}", pair) for key, pair in present]


def _pair(value: object) -> tuple[float, float] | None:
    """Two numbers from ``[x, y]``, or from a string like ``"(x, y)"`` / ``"[x, y]"``."""
    if isinstance(value, str) and len(value) <= 60:
        found = NUMBER_RE.findall(value)
        value = [parse_number(n) for n in found] if len(found) == 2 else None
    pair = numbers_of(value, 2)
    return pair  # type: ignore[return-value]
