"""Pool-based active-learning simulation on a labelled JSONL file (the file's labels are the oracle).

Contract (stable): see docs/ACTIVE_LEARNING.md. Features come from the app's extractor and feature cache,
so only the first run on a file pays for extraction; each round refits the probe in seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from modeling.engine.selection import active
from modeling.services.active_learning import run_simulation
from modeling.services.label_quality import encode_texts, read_labelled_jsonl
from sceneclf_site.api_errors import ServiceError


class Command(BaseCommand):
    help = "Simulate active-learning strategies on a labelled pool and plot learning curves."
    # Offline file-in, file-out work: no URL or model checks needed (they also slow every run).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--train", required=True, help="labelled pool (JSONL: text, label)")
        parser.add_argument("--test", required=True, help="labelled test file (JSONL)")
        parser.add_argument("--strategy", default="all", choices=[*active.STRATEGIES, "all"])
        parser.add_argument("--seed-size", type=int, default=100)
        parser.add_argument("--batch-size", type=int, default=100)
        parser.add_argument("--rounds", type=int, default=10)
        parser.add_argument("--backbone", default=None, help="pack name or path (default: DEFAULT_BACKBONE)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", dest="json_out", default=None)
        parser.add_argument("--plot", default=None, help="PNG file for the learning curves")

    def handle(self, *args: Any, **opts: Any) -> None:
        for name in ("seed_size", "batch_size", "rounds"):
            if opts[name] < (0 if name == "rounds" else 1):
                raise CommandError(f"--{name.replace('_', '-')} must be positive")
        started = time.perf_counter()
        try:
            pool = read_labelled_jsonl(opts["train"])
            test = read_labelled_jsonl(opts["test"])
            self.stdout.write(f"extracting features for {len(pool.texts)} pool + {len(test.texts)} test texts")
            pool_x = encode_texts(pool.texts, opts["backbone"])
            test_x = encode_texts(test.texts, opts["backbone"])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        strategies = list(active.STRATEGIES) if opts["strategy"] == "all" else [opts["strategy"]]

        def report(strategy: str, point: active.CurvePoint) -> None:
            self.stdout.write(
                f"{strategy:>16}  labels={point.labels:>6}  macro_f1={point.macro_f1:.4f}  "
                f"accuracy={point.accuracy:.4f}  ({point.seconds:.1f}s)"
            )

        result = run_simulation(
            pool,
            pool_x,
            test,
            test_x,
            strategies,
            seed_size=opts["seed_size"],
            batch_size=opts["batch_size"],
            rounds=opts["rounds"],
            seed=opts["seed"],
            progress=report,
        )
        self.stdout.write(f"full pool macro_f1={result['full_pool_macro_f1']:.4f}")
        for name, body in result["strategies"].items():
            self.stdout.write(f"{name:>16}  labels to 95% of full pool: {body['labels_to_95']}")
        if opts["json_out"]:
            Path(opts["json_out"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
        if opts["plot"]:
            plot_curves(result, opts["plot"])
        self.stdout.write(f"done in {time.perf_counter() - started:.1f}s")


def plot_curves(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, body in result["strategies"].items():
        ax.plot([p["labels"] for p in body["curve"]], [p["macro_f1"] for p in body["curve"]], marker="o", label=name)
    full = result["full_pool_macro_f1"]
    ax.axhline(full, color="grey", linestyle="--", linewidth=1, label="full pool")
    ax.axhline(0.95 * full, color="grey", linestyle=":", linewidth=1, label="95% of full pool")
    ax.set_xlabel("labelled items")
    ax.set_ylabel("macro-F1 (test)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
