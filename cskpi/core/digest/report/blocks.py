"""What a report section is made of: headings, notes, tables, charts, and the "not available"
line of a section whose data this version does not compute. ``templates/report.html.j2``
has one macro per kind; a section's provider (``sections.py``) returns a list of them."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class Cell:
    text: str
    attrs: dict[str, str] = field(default_factory=dict)  # data-* attributes: the exact figure
    _: KW_ONLY
    header: bool = False  # a row header: <th scope="row">
    href: str | None = None  # a ticket's page in its helpdesk
    cls: str = ""  # num, good, bad, heat-0 … heat-5


@dataclass(frozen=True)
class Table:
    kind: ClassVar[str] = "table"
    caption: str
    head: list[str]
    rows: list[list[Cell]]
    note: str = ""  # under the table: "… and 12 more"
    folded: bool = False  # inside <details>: the numbers behind a chart


@dataclass(frozen=True)
class Chart:
    kind: ClassVar[str] = "chart"
    svg: str  # an <svg> element from chart.svg: trusted markup, not helpdesk text


@dataclass(frozen=True)
class Heading:
    kind: ClassVar[str] = "heading"
    text: str


@dataclass(frozen=True)
class Note:
    kind: ClassVar[str] = "note"
    text: str


@dataclass(frozen=True)
class Missing:
    """Shown as "not available: <reason>"."""

    kind: ClassVar[str] = "missing"
    reason: str


Block = Table | Chart | Heading | Note | Missing


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    blocks: list[Block]
