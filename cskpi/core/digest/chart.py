"""The charts of the digest and the report, each drawn once as a matplotlib figure and saved
as PNG (the email digest, Slack) or as inline SVG (the HTML report): one drawing, two formats.
Also a text sparkline for where no image can go (a Slack webhook cannot upload files).

Colour is never the only signal: solved bars are hatched, the backlog line has markers, and
every chart has a legend or labels with its numbers."""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from cskpi.core.digest.content import Series

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_BARS = "▁▂▃▄▅▆▇█"
CREATED, SOLVED, BACKLOG = "#8c959f", "#2da44e", "#0969da"


def sparkline(values: list[int]) -> str:
    """One block character per value, scaled from the series' lowest to its highest."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    if span == 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[round((v - low) * (len(_BARS) - 1) / span)] for v in values)


def sparklines(series: Series) -> list[tuple[str, str, str]]:
    """(label, sparkline, first → last) for created, solved and backlog."""
    rows = (("created", series.created), ("solved", series.solved), ("backlog", series.backlog))
    return [(label, sparkline(v), f"{v[0]:,} → {v[-1]:,}") for label, v in rows if v]


# The email shows the image 592 px wide on a desktop and ~340 px on a phone: 1080 px of image
# at 200 dpi and text of 11-13 pt (31-36 px) reads at 9.6-11 px on a phone.
WIDTH_IN, HEIGHT_IN, DPI = 5.4, 3.0, 200
TEXT_PT, TITLE_PT = 11, 13


# The report shows its charts up to 760 px wide: a wider figure keeps the same point sizes
# at ~13 px there.
REPORT_WIDTH_IN = 8.4


def chart_figure(series: Series, title: str = "Last 14 days", width: float = WIDTH_IN) -> Figure:
    """Created vs solved per day as bars, the end-of-day backlog as a line on its own axis;
    the legend sits above the plot, beside the title, so it covers no bar or point."""
    # Figure + the Agg canvas, not pyplot: no global state, safe in the scheduler's threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(width, HEIGHT_IN * max(1.0, width / WIDTH_IN * 0.7)), dpi=DPI,
                 layout="constrained")  # fmt: skip
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(len(series.days)))
    ax.bar([i - 0.2 for i in x], series.created, width=0.4, color=CREATED, label="created")
    ax.bar([i + 0.2 for i in x], series.solved, width=0.4, color=SOLVED, label="solved",
           hatch="///", edgecolor="white", linewidth=0)  # fmt: skip
    # Every other day labelled (every n-th for a longer series), counted back from the last
    # so the latest day always is.
    last, step = len(x) - 1, max(1, math.ceil(len(x) / (8 * width / WIDTH_IN)))
    ax.set_xticks(
        x,
        [f"{d:%a}\n{d.day}" if (last - i) % step == 0 else "" for i, d in enumerate(series.days)],
    )
    ax.tick_params(labelsize=TEXT_PT)
    ax.set_ylabel("tickets per day", fontsize=TEXT_PT)
    line = ax.twinx()
    line.plot(x, series.backlog, color=BACKLOG, marker="o", markersize=4, label="backlog")
    line.set_ylim(bottom=0)
    line.tick_params(labelsize=TEXT_PT, colors=BACKLOG)
    line.set_ylabel("backlog", fontsize=TEXT_PT, color=BACKLOG)
    for axes in (ax, line):
        axes.spines["top"].set_visible(False)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # tickets: no 2.5
    handles = ax.get_legend_handles_labels()[0] + line.get_legend_handles_labels()[0]
    ax.set_title(title, fontsize=TITLE_PT, loc="left")
    line.legend(handles=handles, fontsize=TEXT_PT, loc="lower right", bbox_to_anchor=(1, 1),
                ncols=3, frameon=False, borderaxespad=0.2, handlelength=1.2,
                columnspacing=1.0)  # fmt: skip
    return fig


def bars_figure(
    labels: Sequence[str], counts: Sequence[int], title: str, width: float = REPORT_WIDTH_IN
) -> Figure:
    """Counts per bucket as horizontal bars, first bucket on top, each bar's count written
    beside it: a distribution (first response, resolution, backlog age) read at a glance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = max(1.2, 0.42 * len(labels) + 0.7)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(labels)))
    ax.barh(y, counts, color=BACKLOG, height=0.6)
    ax.set_yticks(y, list(labels))
    ax.invert_yaxis()
    ax.set_xlim(0, max([*counts, 1]) * 1.15)  # room for the last count's text
    for i, n in zip(y, counts, strict=True):
        ax.text(n, i, f" {n:,}", va="center", fontsize=TEXT_PT)
    ax.tick_params(labelsize=TEXT_PT)
    ax.xaxis.set_visible(False)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=TITLE_PT, loc="left")
    return fig


def forecast_figure(
    days: Sequence[date],
    created: Sequence[float],
    low: Sequence[int],
    high: Sequence[int],
    title: str,
    width: float = REPORT_WIDTH_IN,
) -> Figure:
    """Forecast arrivals per day as bars, the 80 % band of each day as a whisker from its
    low to its high count: the band is drawn by shape, not by colour alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(width, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(len(days)))
    ax.bar(x, created, width=0.6, color=BACKLOG, label="forecast")
    below = [max(0.0, c - lo) for c, lo in zip(created, low, strict=True)]
    above = [max(0.0, hi - c) for c, hi in zip(created, high, strict=True)]
    ax.errorbar(x, created, yerr=[below, above], fmt="none", ecolor="#1f2328", elinewidth=1.5,
                capsize=4, label="80 % band")  # fmt: skip
    step = max(1, math.ceil(len(x) / (8 * width / WIDTH_IN)))
    ax.set_xticks(x, [f"{d:%a}\n{d.day}" if i % step == 0 else "" for i, d in enumerate(days)])
    ax.tick_params(labelsize=TEXT_PT)
    ax.set_ylabel("tickets per day", fontsize=TEXT_PT)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=TITLE_PT, loc="left")
    ax.legend(fontsize=TEXT_PT, loc="lower right", bbox_to_anchor=(1, 1), ncols=2,
              frameon=False, borderaxespad=0.2)  # fmt: skip
    return fig


def png(fig: Figure) -> bytes:
    out = io.BytesIO()
    # No Software/date metadata: the same data gives the same bytes.
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


_SAVING = threading.Lock()
_SVG_START = re.compile(r"^.*?(?=<svg)", re.DOTALL)  # the XML prolog and its DOCTYPE
_SVG_DROP = re.compile(r"<metadata>.*?</metadata>|<style[^>]*>.*?</style>", re.DOTALL)
_SVG_ID = re.compile(r'(id="|url\(#|href="#)([^")]+)')


def svg(fig: Figure, label: str, prefix: str) -> str:
    """The figure as an ``<svg>`` element to put inside HTML: text kept as text (smaller,
    searchable, read by screen readers), no prolog, metadata or global style, every id
    given ``prefix`` so several charts in one page cannot clash, and ``label`` as its
    accessible name."""
    from matplotlib import rc_context

    out = io.StringIO()
    # rc_context changes matplotlib's global settings: one chart is saved at a time, so a
    # report's sections, drawn in threads of their own, each get their own ids
    with _SAVING, rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}):
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = _SVG_DROP.sub("", _SVG_START.sub("", out.getvalue(), count=1))
    text = _SVG_ID.sub(lambda m: f"{m[1]}{prefix}-{m[2]}", text)
    title = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    head = f'<svg role="img" aria-labelledby="{prefix}-title"'
    text = text.replace("<svg", head, 1)
    return re.sub(r"(<svg[^>]*>)", rf'\1<title id="{prefix}-title">{title}</title>', text, count=1)


def chart_png(series: Series, title: str = "Last 14 days") -> bytes:
    return png(chart_figure(series, title))
