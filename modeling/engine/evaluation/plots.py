"""Server-side plots (matplotlib Agg, no pyplot global state) from the metric dicts of ``metrics.py``.

Each function returns an SVG string; ``fmt="png"`` returns PNG bytes instead.
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache, wraps
from importlib import resources

import matplotlib

matplotlib.use("Agg")

import paperang_p2_fonts_cjk
from matplotlib import font_manager
from matplotlib.figure import Figure

# rc_context changes matplotlib's global settings: one plot at a time per process (threaded servers).
_RC_LOCK = threading.Lock()
# Label names are Chinese first: use a system CJK font when one is installed, else the one shipped as a Python
# package (requirements.txt), so plots show Chinese on a machine without any CJK font too.
CJK_FONT_CANDIDATES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Serif CJK SC", "WenQuanYi Zen Hei", "SimHei")
PACKAGED_CJK_FONT = resources.files(paperang_p2_fonts_cjk) / "fonts" / "wqy-microhei.ttc"


def _register_packaged_font() -> str:
    path = str(PACKAGED_CJK_FONT)
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


@lru_cache(maxsize=1)
def cjk_font_family() -> list[str]:
    packaged = _register_packaged_font()
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return [name for name in CJK_FONT_CANDIDATES if name in installed] + [packaged, "DejaVu Sans"]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _render(fig: Figure, fmt: str) -> str | bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=110)
    data = buffer.getvalue()
    return data.decode("utf-8") if fmt == "svg" else data


def _with_font(build):
    # Fonts are resolved when artists are created and when drawn, so both happen inside the rc context.
    @wraps(build)
    def wrapper(*args, fmt: str = "svg", **kwargs):
        if fmt not in ("svg", "png"):
            raise ValueError(f"plot format must be svg or png, got {fmt!r}")
        with _RC_LOCK, matplotlib.rc_context({"font.family": cjk_font_family(), "svg.fonttype": "none"}):
            return _render(build(*args, **kwargs), fmt)

    return wrapper


@_with_font
def reliability_diagram(reliability_after: dict, reliability_before: dict | None = None) -> Figure:
    """Accuracy against confidence per bin (the ``reliability`` dicts of the metrics), before/after calibration."""
    fig = _figure(5.2, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#888", linewidth=1, label="perfect calibration")
    series = [("before", reliability_before, "#d9822b"), ("after", reliability_after, "#2b6cb0")]
    for name, data, color in series:
        if not data:
            continue
        bins = [b for b in data["bins"] if b["count"]]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            color=color,
            label=f"{name} calibration (ECE {data['ece']:.3f})",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title="Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    _bin_counts(ax, reliability_after["bins"])
    return fig


def _bin_counts(ax, bins: list[dict]) -> None:
    """Items per bin (after calibration) as grey bars on a second axis, each labelled with its count: a
    point drawn from 3 items and one from 300 look the same otherwise."""
    counts = ax.twinx()
    lows = [b["lower"] for b in bins]
    widths = [b["upper"] - b["lower"] for b in bins]
    heights = [b["count"] for b in bins]
    bars = counts.bar(lows, heights, width=widths, align="edge", color="#a0aec0", alpha=0.35, zorder=0)
    counts.bar_label(bars, labels=[str(n) if n else "" for n in heights], fontsize=7, color="#4a5568")
    counts.set_ylim(0, max(max(heights, default=0), 1) * 4)  # bars stay in the lower quarter
    counts.set_ylabel("items per bin", fontsize=8, color="#4a5568")
    counts.tick_params(axis="y", labelsize=7, colors="#4a5568")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)


@_with_font
def confusion_matrix_plot(matrix: list[list[int]], labels: list[str], normalize: bool = True) -> Figure:
    """Confusion matrix (rows gold, columns predicted); rows normalised to recall when ``normalize``."""
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    size = min(max(4.0, 0.45 * len(labels) + 2), 30.0)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="gold", title="Confusion matrix" + (" (row-normalised)" if normalize else ""))
    if len(labels) <= 20:  # cell annotations become unreadable beyond that
        for i in ticks:
            for j in ticks:
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        int(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if values[i, j] > 0.5 else "black",
                    )
    return fig


@_with_font
def risk_coverage_plot(risk_coverage: dict, abstention: dict | None = None) -> Figure:
    """Risk (error rate on answered texts) against coverage; marks the chosen operating point if given."""
    fig = _figure(5.2, 4.2)
    ax = fig.add_subplot()
    curve = risk_coverage["curve"]
    ax.plot(
        [p["coverage"] for p in curve],
        [p["risk"] for p in curve],
        color="#2b6cb0",
        label=f"risk-coverage (AURC {risk_coverage['aurc']:.3f})",
    )
    if abstention and abstention.get("selective_accuracy") is not None:
        ax.scatter(
            [abstention["coverage"]],
            [1 - abstention["selective_accuracy"]],
            color="#c53030",
            zorder=3,
            label=f"threshold {abstention['threshold']:.2f}",
        )
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage", ylabel="risk (error rate)", title="Risk-coverage")
    ax.legend(loc="upper left", fontsize=8)
    return fig
