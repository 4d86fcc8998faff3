"""Firehose's S3 key namespaces: custom prefix expressions and the object name suffix.

The subset of AWS's expressions a partition prefix needs; anything else is refused when the template
is parsed. Spec: docs/local-stack.md, `firehose/prefixes.py`.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

RANDOM_STRING_LENGTH = 11
_RANDOM_ALPHABET = string.ascii_letters + string.digits
_EXPRESSION = re.compile(r"!\{([^}]*)\}")
# Java DateTimeFormatter letters we evaluate, with the widths allowed for each; width 1 means
# "no padding" as in Java (`M` gives 3, `MM` gives 03).
_FIELDS: dict[str, tuple[str, frozenset[int]]] = {
    "y": ("year", frozenset({2, 4})),
    "u": ("year", frozenset({2, 4})),
    "M": ("month", frozenset({1, 2})),
    "d": ("day", frozenset({1, 2})),
    "H": ("hour", frozenset({1, 2})),
    "m": ("minute", frozenset({1, 2})),
    "s": ("second", frozenset({1, 2})),
}
# Reserved by DateTimeFormatter for future use or optional sections: never literal.
_RESERVED = frozenset("#{}[]")

ERROR_OUTPUT_TYPE = "error-output-type"
RANDOM_STRING = "random-string"


class PrefixError(ValueError):
    """A prefix template uses an expression Firehose (or this stand-in) does not evaluate."""


def random_string() -> str:
    """`!{firehose:random-string}`: 11 random letters and digits."""
    return "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(RANDOM_STRING_LENGTH))


@dataclass(frozen=True, slots=True)
class _Literal:
    text: str


@dataclass(frozen=True, slots=True)
class _DateField:
    attribute: str
    width: int


_DatePart = _Literal | _DateField


@dataclass(frozen=True, slots=True)
class _Timestamp:
    parts: tuple[_DatePart, ...]


@dataclass(frozen=True, slots=True)
class _Firehose:
    value: str


_Part = _Literal | _Timestamp | _Firehose


def _format_date(parts: tuple[_DatePart, ...], when: datetime) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, _Literal):
            out.append(part.text)
            continue
        value: int = getattr(when, part.attribute)
        if part.attribute == "year" and part.width == 2:
            value %= 100  # Java's `yy` is the reduced two-digit year
        out.append(str(value) if part.width == 1 else f"{value:0{part.width}d}")
    return "".join(out)


def _quoted(pattern: str, start: int) -> tuple[str, int]:
    """The literal opened by the quote at `start` ('' inside is a quote) and the index after it."""
    text: list[str] = []
    i = start + 1
    while i < len(pattern):
        if pattern[i] != "'":
            text.append(pattern[i])
            i += 1
        elif pattern.startswith("''", i):
            text.append("'")
            i += 2
        else:
            return "".join(text), i + 1
    raise PrefixError(f"unterminated quoted literal in timestamp pattern {pattern!r}")


def parse_date_pattern(pattern: str) -> tuple[_DatePart, ...]:
    """Compile the supported subset of a Java DateTimeFormatter pattern."""
    if not pattern:
        raise PrefixError("empty timestamp pattern: write e.g. !{timestamp:yyyy-MM-dd}")
    parts: list[_DatePart] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "'":
            if pattern.startswith("''", i):  # outside quotes, '' is one quote character
                parts.append(_Literal("'"))
                i += 2
                continue
            text, i = _quoted(pattern, i)
            parts.append(_Literal(text))
        elif char.isascii() and char.isalpha():
            width = len(pattern) - i - len(pattern[i:].lstrip(char))
            field = _FIELDS.get(char)
            if field is None or width not in field[1]:
                raise PrefixError(
                    f"timestamp pattern {pattern!r}: {char * width!r} is not supported here "
                    f"(supported: yyyy, yy, MM, M, dd, d, HH, H, mm, m, ss, s, 'quoted text')"
                )
            parts.append(_DateField(field[0], width))
            i += width
        elif char in _RESERVED:
            raise PrefixError(f"timestamp pattern {pattern!r}: {char!r} is reserved; quote it")
        else:
            parts.append(_Literal(char))
            i += 1
    return tuple(parts)


def _parse_expression(body: str, template: str, *, error_prefix: bool) -> _Part:
    namespace, sep, value = body.partition(":")
    if not sep:
        raise PrefixError(f"prefix {template!r}: expression !{{{body}}} has no namespace")
    if namespace == "timestamp":
        return _Timestamp(parse_date_pattern(value))
    if namespace == "firehose" and value == RANDOM_STRING:
        return _Firehose(value)
    if namespace == "firehose" and value == ERROR_OUTPUT_TYPE:
        if not error_prefix:
            raise PrefixError(
                f"prefix {template!r}: !{{firehose:{ERROR_OUTPUT_TYPE}}} is only allowed in "
                f"the error output prefix"
            )
        return _Firehose(value)
    raise PrefixError(
        f"prefix {template!r}: unknown expression !{{{body}}}; supported: "
        f"!{{timestamp:<pattern>}}, !{{firehose:{RANDOM_STRING}}}, "
        f"!{{firehose:{ERROR_OUTPUT_TYPE}}} (error prefix only)"
    )


class KeyPrefix:
    """A parsed prefix template: `render` evaluates it for one S3 object."""

    def __init__(self, template: str, *, error_prefix: bool = False) -> None:
        self.template = template
        self._parts = self._parse(template, error_prefix=error_prefix)

    @staticmethod
    def _parse(template: str, *, error_prefix: bool) -> tuple[_Part, ...]:
        parts: list[_Part] = []
        position = 0
        for match in _EXPRESSION.finditer(template):
            parts.append(_Literal(template[position : match.start()]))
            parts.append(_parse_expression(match.group(1), template, error_prefix=error_prefix))
            position = match.end()
        rest = template[position:]
        if "!{" in rest:
            raise PrefixError(f"prefix {template!r}: unterminated expression (missing '}}')")
        parts.append(_Literal(rest))
        return tuple(part for part in parts if not (isinstance(part, _Literal) and not part.text))

    def render(
        self,
        when: datetime,
        *,
        error_output_type: str | None = None,
        random: Callable[[], str] = random_string,
    ) -> str:
        """The prefix for an object whose oldest record arrived at `when` (a UTC datetime)."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, _Literal):
                out.append(part.text)
            elif isinstance(part, _Timestamp):
                out.append(_format_date(part.parts, when))
            elif part.value == RANDOM_STRING:
                out.append(random())
            elif error_output_type is None:
                raise PrefixError(f"prefix {self.template!r} needs an error output type")
            else:
                out.append(error_output_type)
        return "".join(out)


def object_name(
    stream: str, stream_version: int, when: datetime, extension: str, object_id: uuid.UUID
) -> str:
    """The suffix Firehose appends to the evaluated prefix (s3-object-name.html)."""
    return f"{stream}-{stream_version}-{when:%Y-%m-%d-%H-%M-%S}-{object_id}{extension}"
