"""Views of the registry (`grounding.generations`) that the parsers read: family sets by coordinate space."""

from __future__ import annotations

from grounding.generations import FAMILIES, GENERATIONS, RELATIVE_SCALE, check_family, family_from_model_type

#: Families whose numbers are relative, 0-1000 of the original image. The others
#: (Qwen2.5-VL) write absolute pixels of the resized image the model saw.
RELATIVE_FAMILIES: frozenset[str] = frozenset(g.family for g in GENERATIONS if g.relative)

#: Families whose special tokens are often stripped by decoding with
#: ``skip_special_tokens=True``, leaving the bare ``label(x1,y1),(x2,y2)`` form: read
#: loosely for them (numbers after a space too). Fine-tunes of the others write the
#: tokens as well; their bare form is read only attached to the word before it.
BARE_FORM_FAMILIES: frozenset[str] = frozenset(g.family for g in GENERATIONS if g.bare_form)

__all__ = ["BARE_FORM_FAMILIES", "FAMILIES", "RELATIVE_FAMILIES", "RELATIVE_SCALE", "check_family", "family_from_model_type"]
