"""The label of a JSON grounding: which key names the object, in a documented order.

Models name things under many keys, and the prompt often decides which: the cookbooks ask
for ``label``; the omni-recognition cookbook gets ``name_en``/``name_zh`` and ``names``;
OCR prompts ``text_content``; people's own prompts ``object``, ``category``, ``class`` or
``description`` (ms-swift issue 4898 shows ``{"name": …, "bbox_2d": …, "description": …}``).
The first non-empty value of these, in this order, is the label:

1. ``label``, ``name`` — the keys the official prompts ask for;
2. English before other languages: ``label_en``, ``name_en``, then ``label_zh``, ``name_zh``,
   then any other ``label_<lang>`` / ``name_<lang>`` key (``label_ja``, ``name_fr``), in text order;
3. ``names``, ``labels``;
4. ``object``, ``object_name``, ``category``, ``category_name``, ``class``, ``class_name``,
   and the Chinese keys 标签, 名称, 类别, 物体, 对象;
5. ``text_content``, ``text``, 文字, 文本 (OCR);
6. ``description``, ``desc``, ``caption``, 描述.

A value may be a string, a number, a ``{"en": …, "zh": …}`` pair (English first, then
Chinese, then any other string in it) or a list (its first string). A bilingual pair
gives its English name alone. Anything else gives ``""``.
"""

from __future__ import annotations

import re

_FIRST: tuple[str, ...] = ("label", "name", "label_en", "name_en", "label_zh", "name_zh")
_NAMING: tuple[str, ...] = (
    "names",
    "labels",
    "object",
    "object_name",
    "category",
    "category_name",
    "class",
    "class_name",
    "标签",
    "名称",
    "类别",
    "物体",
    "对象",
)
_TEXTS: tuple[str, ...] = ("text_content", "text", "文字", "文本", "description", "desc", "caption", "描述")
#: Every fixed label key, most preferred first (``label_<lang>`` / ``name_<lang>`` keys go after ``name_zh``).
LABEL_KEYS: tuple[str, ...] = _FIRST + _NAMING + _TEXTS
_LANGUAGE_KEY_RE = re.compile(r"(?:label|name)_[a-z]{2,3}(?:[-_][a-z]{2,4})?", re.IGNORECASE)


def label_of(obj: dict, texts: bool = True) -> str:
    """The label of a decoded JSON object, by the order above; ``""`` when it has none.

    ``texts=False`` stops before groups 5 and 6: the keys that name the object, not what it says.
    """
    languages = [k for k in obj if isinstance(k, str) and k not in _FIRST and _LANGUAGE_KEY_RE.fullmatch(k)]
    for key in (*_FIRST, *languages, *_NAMING, *(_TEXTS if texts else ())):
        text = _text(obj.get(key))
        if text:
            return text
    return ""


def _text(value: object) -> str | None:
    """A string, a number, a language pair (English first) or a list's first string, stripped."""
    if isinstance(value, dict):
        candidates = [value.get("en"), value.get("zh"), *value.values()]
    elif isinstance(value, list):
        candidates = value
    else:
        candidates = [value]
    for v in candidates:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None
