"""Spans over a note: a label over one or more half-open ``[start, end)`` code-point ranges."""

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Fragment:
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"fragment [{self.start}, {self.end}) must have 0 <= start < end")


@dataclass(frozen=True)
class SpanData:
    """A span as the domain sees it, independent of how it is stored."""

    label: str
    fragments: tuple[Fragment, ...]
    attributes: dict = field(default_factory=dict, compare=False, hash=False)
    confidence: float | None = field(default=None, compare=False)
    concept: str | None = field(default=None, compare=False)  # "system:code" of its concept code
    # Its SpanStatus value where the reader knew it ("pending": a pre-label not yet decided), else None.
    status: str | None = field(default=None, compare=False)

    def covered_text(self, text: str, separator: str = " ") -> str:
        return separator.join(text[f.start : f.end] for f in self.fragments)

    def fits(self, text: str) -> bool:
        return all(f.end <= len(text) for f in self.fragments)
