"""Text from outside (a host's replies, its error lines) made safe to print
on the operator's terminal: control characters escaped, so that nothing
printed can move the cursor, set the window title, clear the screen or
write the clipboard (OSC 52)."""

import re

# C0 and C1 controls (ESC, CSI, OSC, BEL, CR, backspace...), DEL, and the
# Unicode controls that reorder or hide text (bidi overrides, zero-width).
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e"
                          "\u2066-\u2069\ufeff]")


def printable(text):
    """*text* with every control character but the newline escaped as
    ``\\xNN`` / ``\\uNNNN``: safe to print on a terminal."""
    return _UNPRINTABLE.sub(_escape, text)


def printable_line(text):
    """One line of *text*, newlines escaped too."""
    return printable(text).replace("\n", "\\n")


def _escape(m):
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
