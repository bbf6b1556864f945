"""The digest's 14-day chart: a PNG drawn with matplotlib's Agg canvas, and a text sparkline
for where no image can go (a Slack webhook cannot upload files)."""

from __future__ import annotations

import io
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


def chart_figure(series: Series, title: str = "Last 14 days") -> Figure:
    """Created vs solved per day as bars, the end-of-day backlog as a line on its own axis;
    the legend sits above the plot, beside the title, so it covers no bar or point."""
    # Figure + the Agg canvas, not pyplot: no global state, safe in the scheduler's threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(len(series.days)))
    ax.bar([i - 0.2 for i in x], series.created, width=0.4, color=CREATED, label="created")
    ax.bar([i + 0.2 for i in x], series.solved, width=0.4, color=SOLVED, label="solved")
    # Every other day labelled, counted back from the last so the latest day always is.
    last = len(x) - 1
    ax.set_xticks(
        x, [f"{d:%a}\n{d.day}" if (last - i) % 2 == 0 else "" for i, d in enumerate(series.days)]
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


def chart_png(series: Series, title: str = "Last 14 days") -> bytes:
    out = io.BytesIO()
    # No Software/date metadata: the same data gives the same bytes.
    chart_figure(series, title).savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()
