"""The placeholder title of items without one, checked on its own.

Why a module of its own: the command line checks `--missing-title` while parsing its arguments, which must not
import the data readers (and with them torch).
"""

from __future__ import annotations


def check_missing_title(template: str) -> str:
    """``template`` if it formats with ``item_id`` alone; otherwise a ValueError naming it (rather than a KeyError
    from `str.format` after the data was read)."""
    try:
        template.format(item_id="x")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"missing title {template!r} is not a valid placeholder: only {{item_id}} may appear in "
                         f"braces ({type(error).__name__}: {error}); write {{{{ and }}}} for literal braces") from None
    return template
