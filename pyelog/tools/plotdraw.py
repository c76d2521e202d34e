# SPDX-License-Identifier: BSD-2-Clause
"""Drawing a :class:`~pyelog.tools.plotdata.ConnectionPlot`: a picture
(matplotlib: PNG, SVG, PDF) or an interactive page (plotly: one
self-contained HTML file, zoom and hover, no network needed to view it).

Panels, top to bottom, sharing the time axis: one time-sequence graph per
direction, then cwnd/ssthresh, RTT, bytes in flight (one line per
direction in each).

Readable at any size of capture: retransmissions are marks on the
segments, not lines across the panels, and a series with more points
than the picture has room for is thinned per time column before drawing
(:func:`thin_steps` keeps each column's first, lowest, highest and last
value; :func:`thin_spans` merges a column's segments into the range they
cover; :func:`thin_marks` keeps one mark per cell of a time x value
grid). The counts in the legends are the events', before thinning.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable

from pyelog.records.output import PrivateFile
from pyelog.records.untrusted import terminal_safe
from pyelog.tools.command import ToolError
from pyelog.tools.plotdata import ConnectionPlot, Direction

__all__ = ["panel_titles", "thin_steps", "thin_spans", "thin_marks", "draw_picture", "draw_html",
           "PICTURE_COLUMNS", "HTML_COLUMNS"]

#: Time columns a series is thinned to: about the picture's width in pixels,
#: more for the page, where one zooms in.
PICTURE_COLUMNS = 1200
HTML_COLUMNS = 6000

#: What a time-sequence panel says when the capture has no segments of it.
NO_SEGMENTS = "no IN/OUT events (VERBOSE) for this direction: marks only"

# Per direction: (main colour, second colour).
_COLOURS = [("tab:blue", "tab:cyan"), ("tab:orange", "gold")]


def _columns(t0: float, t1: float, n: int) -> Callable[[float], int]:
    width = (t1 - t0) / n if t1 > t0 else 1.0
    return lambda t: int((t - t0) / width)


def thin_steps(points: list[tuple[float, int]], t0: float, t1: float, n: int) -> list[tuple[float, int]]:
    """At most about 4 points per time column of ``n`` over [t0, t1]: the
    first, lowest, highest and last of each, in time order (a step line's
    envelope survives). Fewer than 4n points are returned unchanged."""
    if len(points) <= 4 * n:
        return points
    column = _columns(t0, t1, n)
    out: list[tuple[float, int]] = []
    group: list[tuple[float, int]] = []
    current = None
    for p in points + [(float("inf"), 0)]:
        c = column(p[0]) if p[0] != float("inf") else None
        if c != current and group:
            keep = {0, len(group) - 1,
                    min(range(len(group)), key=lambda i: group[i][1]),
                    max(range(len(group)), key=lambda i: group[i][1])}
            out += [group[i] for i in sorted(keep)]
            group = []
        current = c
        group.append(p)
    return out


def thin_spans(spans: list[tuple[float, int, int]], t0: float, t1: float, n: int) -> list[tuple[float, int, int]]:
    """Segments merged per time column of ``n`` into the range they cover
    (at the column's first time); fewer than 2n spans are returned unchanged."""
    if len(spans) <= 2 * n:
        return spans
    column = _columns(t0, t1, n)
    merged: dict[int, list] = {}
    for t, lo, hi in spans:
        m = merged.get(column(t))
        if m is None:
            merged[column(t)] = [t, lo, hi]
        else:
            m[1], m[2] = min(m[1], lo), max(m[2], hi)
    return [tuple(m) for m in merged.values()]


def thin_marks(marks: list[tuple[float, int]], t0: float, t1: float, n: int) -> list[tuple[float, int]]:
    """One mark per cell of an n x n/2 grid over time and value; fewer than
    2n marks are returned unchanged."""
    if len(marks) <= 2 * n:
        return marks
    column = _columns(t0, t1, n)
    lo = min(v for _, v in marks)
    hi = max(v for _, v in marks)
    row = _columns(lo, hi, max(1, n // 2))
    seen: dict[tuple[int, int], tuple[float, int]] = {}
    for t, v in marks:
        seen.setdefault((column(t), row(v)), (t, v))
    return list(seen.values())


def panel_titles(plot: ConnectionPlot) -> list[str]:
    """The panels the picture has, top to bottom."""
    return ([f"time-sequence: {d.label or f'session {d.session_id}'}" for d in plot.directions]
            + ["cwnd / ssthresh (segments)", "RTT (µs)", "bytes in flight"])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _short(d: Direction, many: bool) -> str:
    return f"session {d.session_id}: " if many else ""


class _Series:
    """The thinned series of one picture, in the renderers' terms."""

    def __init__(self, plot: ConnectionPlot, columns: int) -> None:
        self.t0, self.t1, self.n = plot.start_ms, max(plot.end_ms, plot.start_ms + 1e-3), columns

    def steps(self, points):
        """Thinned, and held to the end of the time axis: a step line's
        last value stands until something changes it."""
        points = thin_steps(points, self.t0, self.t1, self.n)
        if points and points[-1][0] < self.t1:
            points = points + [(self.t1, points[-1][1])]
        return points

    def spans(self, spans):
        return thin_spans(spans, self.t0, self.t1, self.n)

    def marks(self, marks):
        return thin_marks(marks, self.t0, self.t1, self.n)


def _publish(path: str, write: Callable) -> None:
    """Write ``path`` as every output is written: private, published whole, nothing left on failure."""
    out = PrivateFile(path, publish="close")
    try:
        with os.fdopen(out.fd, "wb") as f:
            out.fd = -1                 # the stream closes it
            write(f)
        out.commit()
    except ValueError as e:             # e.g. "Format 'txt' is not supported"
        out.discard()
        raise ToolError(f"{path}: {e}") from None
    except BaseException:
        out.discard()
        raise


# --------------------------------------------------------------------------- matplotlib

def draw_picture(plot: ConnectionPlot, path: str) -> list[str]:
    """Draw ``plot`` into ``path`` (PNG, SVG, PDF: the suffix says); the panel titles drawn."""
    try:
        import matplotlib
    except ImportError as e:
        raise ToolError(f"matplotlib is needed ({e}): install pyelog's plot extra "
                        "(pip install 'pyelog[plot]'), or apt-get install python3-matplotlib") from None
    matplotlib.use("Agg")          # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    titles = panel_titles(plot)
    s = _Series(plot, PICTURE_COLUMNS)
    many = len(plot.directions) > 1
    heights = [3] * len(plot.directions) + [1.4, 1.4, 1.4]
    fig, axes = plt.subplots(len(titles), 1, sharex=True, figsize=(12, 1.1 * sum(heights) + 1),
                             gridspec_kw={"height_ratios": heights})
    try:
        with warnings.catch_warnings():
            # A name in the capture may use letters the font lacks: a detail
            # of the drawing, not something to print among the tool's lines.
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
            for ax, d in zip(axes, plot.directions):
                _tseq_axes(ax, d, s, LineCollection)
            cw, rtt, fl = axes[len(plot.directions):]
            for i, d in enumerate(plot.directions):
                main, second = _COLOURS[i % 2]
                who = _short(d, many)
                _step(cw, s.steps(d.cwnd), main, f"{who}cwnd")
                _step(cw, s.steps(d.ssthresh), second, f"{who}ssthresh", style="--")
                if d.rtt:
                    xs, ys = zip(*s.marks(d.rtt))
                    rtt.plot(xs, ys, ".", color=main, markersize=3, label=f"{who}samples ({len(d.rtt)})")
                _step(rtt, s.steps(d.srtt), second, f"{who}smoothed")
                _step(fl, s.steps(d.inflight), main, f"{who}in flight")
            for ax, title in zip(axes, titles):
                ax.set_title(terminal_safe(title), fontsize="small", loc="left")
                ax.grid(True, alpha=0.3)
                if ax.lines or ax.collections:
                    ax.legend(loc="upper left", fontsize="x-small", markerscale=2)
                else:
                    ax.text(0.5, 0.5, "no events for this panel in the capture", transform=ax.transAxes,
                            ha="center", va="center", color="grey")
            states = plot.directions[0].states
            for ax in axes:
                for x, _ in states:
                    ax.axvline(x, color="grey", linestyle=":", linewidth=0.7, alpha=0.6)
            for x, state in states:
                axes[0].annotate(terminal_safe(state), (x, 0.02), xycoords=("data", "axes fraction"),
                                 rotation=90, fontsize="xx-small", color="dimgrey", ha="right", va="bottom")
            axes[-1].set_xlim(plot.start_ms, plot.end_ms if plot.end_ms > plot.start_ms else None)
            axes[-1].set_xlabel("ms since the connection's first event")
            fig.suptitle(terminal_safe(plot.title), fontsize="medium")
            fig.tight_layout()
            fmt = os.path.splitext(path)[1][1:].lower() or "png"
            _publish(path, lambda f: fig.savefig(f, dpi=100, format=fmt))
    finally:
        plt.close(fig)
    return titles


def _step(ax, points, colour: str, label: str, style: str = "-") -> None:
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, drawstyle="steps-post", color=colour, linestyle=style, linewidth=1.0, label=label)


def _tseq_axes(ax, d: Direction, s: _Series, LineCollection) -> None:
    """One direction's time-sequence graph: segments as vertical bars from
    start to end sequence, marks for retransmissions and RTOs."""
    def bars(spans, colour, label, width=1.2):
        if spans:
            thin = s.spans(spans)
            ax.add_collection(LineCollection([((t, lo), (t, hi)) for t, lo, hi in thin],
                                             colors=colour, linewidths=width, label=label))
            ax.update_datalim([(t, lo) for t, lo, _ in thin] + [(t, hi) for t, _, hi in thin])
    _step(ax, s.steps(d.window), "goldenrod", f"receive window ({len(d.window)})")
    _step(ax, s.steps(d.acks), "tab:green", f"ACK ({len(d.acks)})")
    bars(d.sacks, "tab:purple", f"SACK blocks ({len(d.sacks)})", width=2.5)
    bars(d.segments, "tab:blue", f"{_plural(len(d.segments), 'segment')}")
    bars(d.resent, "red", f"resent ({len(d.resent)})", width=1.8)
    if d.retransmits:
        xs, ys = zip(*s.marks(d.retransmits))
        ax.plot(xs, ys, "x", color="darkred", markersize=4, label=f"RETRANSMIT ({len(d.retransmits)})")
    if d.rtos:
        xs, ys = zip(*s.marks(d.rtos))
        ax.plot(xs, ys, "v", color="darkorange", markersize=7, markeredgecolor="black",
                markeredgewidth=0.5, label=f"RTO ({len(d.rtos)})")
    if not (d.segments or d.resent or d.acks):
        ax.text(0.5, 0.93, NO_SEGMENTS, transform=ax.transAxes, ha="center", va="top", color="grey")
    ax.autoscale_view()
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)   # bytes as bytes: no "1e6" corner
    ax.set_ylabel("sequence (bytes)")


# --------------------------------------------------------------------------- plotly

def draw_html(plot: ConnectionPlot, path: str) -> list[str]:
    """Write ``plot`` as one self-contained interactive HTML page (plotly:
    zoom, pan, hover); the panel titles drawn."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as e:
        raise ToolError(f"plotly is needed for HTML ({e}): install pyelog's plot extra "
                        "(pip install 'pyelog[plot]')") from None
    titles = panel_titles(plot)
    s = _Series(plot, HTML_COLUMNS)
    many = len(plot.directions) > 1
    n_dir = len(plot.directions)
    heights = [3] * n_dir + [1.4, 1.4, 1.4]
    fig = make_subplots(rows=len(titles), cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=heights, subplot_titles=[terminal_safe(t) for t in titles])

    def step(row, points, colour, name, dash="solid"):
        if points:
            xs, ys = zip(*points)
            fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": colour,
                                                                          "dash": dash, "width": 1},
                                       name=name), row=row, col=1)

    def bars(row, spans, colour, name, width=1.5):
        if spans:
            xs, ys, text = [], [], []
            for t, lo, hi in s.spans(spans):
                xs += [t, t, None]
                ys += [lo, hi, None]
                text += [f"{lo}-{hi} ({hi - lo} B)"] * 2 + [None]
            fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line={"color": colour, "width": width},
                                       name=name, text=text, hoverinfo="x+text+name"), row=row, col=1)

    def marks(row, points, colour, name, symbol, size=6):
        if points:
            xs, ys = zip(*s.marks(points))
            fig.add_trace(go.Scattergl(x=xs, y=ys, mode="markers", name=name,
                                       marker={"color": colour, "symbol": symbol, "size": size}),
                          row=row, col=1)

    for row, d in enumerate(plot.directions, start=1):
        step(row, s.steps(d.window), "goldenrod", f"receive window ({len(d.window)})")
        step(row, s.steps(d.acks), "green", f"ACK ({len(d.acks)})")
        bars(row, d.sacks, "purple", f"SACK blocks ({len(d.sacks)})", width=3)
        bars(row, d.segments, "royalblue", _plural(len(d.segments), "segment"))
        bars(row, d.resent, "red", f"resent ({len(d.resent)})", width=2)
        marks(row, d.retransmits, "darkred", f"RETRANSMIT ({len(d.retransmits)})", "x")
        marks(row, d.rtos, "darkorange", f"RTO ({len(d.rtos)})", "triangle-down", size=10)
        fig.update_yaxes(title_text="sequence (bytes)", row=row, col=1)
        if not (d.segments or d.resent or d.acks):
            fig.add_annotation(text=NO_SEGMENTS, showarrow=False, font={"color": "grey"},
                               xref="x domain" if row == 1 else f"x{row} domain",
                               yref="y domain" if row == 1 else f"y{row} domain", x=0.5, y=0.95)
    for i, d in enumerate(plot.directions):
        main, second = ("royalblue", "lightseagreen") if i == 0 else ("darkorange", "goldenrod")
        who = _short(d, many)
        step(n_dir + 1, s.steps(d.cwnd), main, f"{who}cwnd")
        step(n_dir + 1, s.steps(d.ssthresh), second, f"{who}ssthresh", dash="dash")
        marks(n_dir + 2, d.rtt, main, f"{who}RTT samples ({len(d.rtt)})", "circle", size=3)
        step(n_dir + 2, s.steps(d.srtt), second, f"{who}smoothed RTT")
        step(n_dir + 3, s.steps(d.inflight), main, f"{who}bytes in flight")
    for x, state in plot.directions[0].states:
        fig.add_vline(x=x, line={"color": "grey", "dash": "dot", "width": 1})
        fig.add_annotation(x=x, y=1.0, yref="paper", text=terminal_safe(state), showarrow=False,
                           textangle=-30, font={"size": 9, "color": "dimgrey"}, xanchor="left")
    fig.update_xaxes(title_text="ms since the connection's first event", row=len(titles), col=1)
    fig.update_layout(title=terminal_safe(plot.title), height=260 * sum(heights) / 1.6,
                      hovermode="closest", template="plotly_white")
    _publish(path, lambda f: f.write(fig.to_html(include_plotlyjs=True, full_html=True).encode()))
    return titles
