"""Plots of production traffic (the monitoring dashboard): daily series per version and the reliability of
answers that received a label. Same rendering as ``plots.py`` (SVG by default, CJK fonts)."""

from __future__ import annotations

from datetime import date

from matplotlib.figure import Figure

from modeling.engine.evaluation.plots import _figure, _with_font

COLORS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030")


@_with_font
def daily_series_plot(versions: list[dict]) -> Figure:
    """Three panels sharing the day axis: volume, abstain and intervention rates, and expected (CBPE, dashed)
    against realised accuracy (solid, where labels arrived). `versions` is the dashboard's `versions` list."""
    fig = _figure(7.5, 7.0)
    volume, rates, accuracy = fig.subplots(3, 1, sharex=True)
    for i, version in enumerate(versions):
        color = COLORS[i % len(COLORS)]
        days = [date.fromisoformat(day["day"]) for day in version["days"]]
        name = f"{version['version']} ({version['role']})" if version.get("role") else version["version"]
        volume.plot(days, [day["volume"] for day in version["days"]], marker="o", color=color, label=name)
        rates.plot(
            days, [day["abstain_rate"] for day in version["days"]], marker="o", color=color, label=f"{name} abstain"
        )
        rates.plot(
            days,
            [day["intervention_rate"] for day in version["days"]],
            marker="s",
            linestyle=":",
            color=color,
            label=f"{name} intervention",
        )
        accuracy.plot(
            days,
            [day["expected_accuracy"] for day in version["days"]],
            linestyle="--",
            color=color,
            label=f"{name} expected (CBPE)",
        )
        realised = [
            (d, day["accuracy"]) for d, day in zip(days, version["days"], strict=True) if day["accuracy"] is not None
        ]
        if realised:
            accuracy.plot(*zip(*realised, strict=True), marker="o", color=color, label=f"{name} realised")
    volume.set(ylabel="predictions", title="Volume per day")
    rates.set(ylabel="share", ylim=(0, 1), title="Abstain and human-intervention rate")
    accuracy.set(ylabel="accuracy", ylim=(0, 1), title="Expected (from confidence) and realised accuracy")
    for ax in (volume, rates, accuracy):
        ax.legend(loc="best", fontsize=7)
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return fig


@_with_font
def production_reliability_plot(reliability: dict) -> Figure:
    """Share of right answers against confidence, for production answers that received a label."""
    fig = _figure(5.2, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#888", linewidth=1, label="perfect calibration")
    bins = [b for b in reliability["bins"] if b["count"]]
    ax.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        marker="o",
        color=COLORS[0],
        label=f"production (ECE {reliability['ece']:.3f}, n={sum(b['count'] for b in bins)})",
    )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title="Reliability on labelled traffic")
    ax.legend(loc="upper left", fontsize=8)
    return fig
