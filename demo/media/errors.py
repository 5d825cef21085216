"""The one error the media modules raise: an upload that cannot be used, in one sentence.

Apart from `pictures.py` (which re-exports it) so that `budget.py` can raise it too without an
import cycle.
"""

from __future__ import annotations


class UploadError(ValueError):
    """An upload that cannot be used; the text says why, in one sentence."""
