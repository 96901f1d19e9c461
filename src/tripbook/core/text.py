"""What text input may hold, as patterns the OpenAPI schema publishes and pydantic enforces.

Control characters never reach PostgreSQL (it refuses NUL in text: a 500, once); names,
titles and places are one visible line; free text may span lines.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Control characters (C0, DEL, C1): PostgreSQL refuses NUL in text, so one used to reach the
# database as a 500, and none of them belongs in a name, a title or a login.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
# What str.strip() removes besides control characters, spelled out: `\s` means a different
# set in each dialect that reads these patterns (Rust in pydantic, ECMA in clients).
_SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# One line with something visible on it (a name, a title, a place).
LINE_PATTERN = rf"^[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*$"
# Anything typed on one line, blank included (a search term, a login).
NO_CONTROL_PATTERN = rf"^[^{_CONTROL}]*$"
# Free text over several lines: tabs and line breaks, no other control character.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


# Stripped after the constraints, which hold for the value as sent, as the schema says (a
# model's str_strip_whitespace strips first: "Ana\n" would pass as "Ana").
Stripped = AfterValidator(str.strip)

FullName = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=1, max_length=200, pattern=LINE_PATTERN),
    Stripped,
]
