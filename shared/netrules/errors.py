"""The one parse error every tool-output parser raises, so `analyze` can report line and expectation."""

from __future__ import annotations


class ParseError(ValueError):
    """Input that is not the tool output we expected, with the 1-based line and what was expected there."""

    def __init__(self, line: int, expected: str, got: str = "") -> None:
        self.line = line
        self.expected = expected
        self.got = got
        shown = f", got {got[:80]!r}" if got else ""
        super().__init__(f"line {line}: expected {expected}{shown}")
