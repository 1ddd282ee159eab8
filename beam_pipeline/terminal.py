"""Text for a terminal: what a file name, label or message holds is shown, never obeyed.

Video ids, URIs, labels and error messages come from files and manifests that anyone
may have named. Printed raw, ``ESC ] 0 ; ... BEL`` retitles the user's terminal,
``ESC [ 31 m`` recolours it, and a CR or LF inside a name draws a table row of its
own. Every human-readable printer passes each line it prints through ``escape``; JSON
and CSV output is written exact instead (``json.dumps`` escapes control characters itself, and CSV
quotes a field that holds a line break).
"""

from __future__ import annotations

__all__ = ["escape"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# C0 controls and DEL, C1 controls (U+009B is a one-character CSI on many terminals),
# and the Unicode bidi controls, which reorder what follows them on the line
# ("Trojan Source", CVE-2021-42574).
_CONTROLS = [
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_TABLE = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in _CONTROLS
}


def escape(text: object) -> str:
    """``str(text)`` with every control character as a visible escape (``\\x1b``, ``\\n``).

    The result holds no character a terminal acts on, so it stays on one line.
    """
    return str(text).translate(_TABLE)

