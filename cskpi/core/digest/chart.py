"""The digest's 14-day chart: a PNG drawn with matplotlib's Agg canvas, and a text sparkline
for where no image can go (a Slack webhook cannot upload files)."""

from __future__ import annotations

import io

from cskpi.core.digest.content import Series

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


def chart_png(series: Series, title: str = "Last 14 days") -> bytes:
    """Created vs solved per day as bars, the end-of-day backlog as a line on its own axis."""
    # Figure + the Agg canvas, not pyplot: no global state, safe in the scheduler's threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 3.0), dpi=150)
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
    ax.tick_params(labelsize=7)
    ax.set_ylabel("tickets per day", fontsize=8)
    line = ax.twinx()
    line.plot(x, series.backlog, color=BACKLOG, marker="o", markersize=3, label="backlog")
    line.set_ylim(bottom=0)
    line.tick_params(labelsize=7, colors=BACKLOG)
    line.set_ylabel("backlog", fontsize=8, color=BACKLOG)
    for spine in ("top",):
        ax.spines[spine].set_visible(False)
        line.spines[spine].set_visible(False)
    handles = ax.get_legend_handles_labels()[0] + line.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="upper left", ncols=3, frameon=False)
    ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    out = io.BytesIO()
    # No Software/date metadata: the same data gives the same bytes.
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()
