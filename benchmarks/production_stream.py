"""The production loop on hwu64 with a change in the stream: `manage.py simulate_production`, then its plot.

    .venv/bin/python benchmarks/production_stream.py --out var/bench/production [--hold transport,cooking,news]
        [--feedback-rate 0.3] [--batch 500] [--plot docs/img/production_stream.png]

Labels are hwu64's 18 scenarios. The held-back scenarios are left out of T and V; the stream S is first
`--before` in-scope texts (no drift), then `--after` texts of which `--held-share` come from the held-back
scenarios. T, V and S are drawn from hwu64's train file with a fixed seed and written under --out (never into
the repository). The command runs against the configured database (it makes and deletes its own project)."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/datasets/hwu64/train.jsonl")


def build_files(out: Path, hold: set[str], args: argparse.Namespace) -> dict[str, Path]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(args.seed).shuffle(rows)
    known = [r for r in rows if r["scenario"] not in hold]
    held = [r for r in rows if r["scenario"] in hold]
    n_held = round(args.held_share * args.after)
    train, val = known[: args.train], known[args.train : args.train + args.val]
    rest = known[args.train + args.val :]
    before, after = rest[: args.before], rest[args.before : args.before + args.after - n_held] + held[:n_held]
    random.Random(args.seed + 1).shuffle(after)
    paths = {}
    for name, split in (("train", train), ("val", val), ("stream", before + after)):
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text(
            "\n".join(json.dumps({"text": r["text"], "label": r["scenario"]}) for r in split) + "\n", encoding="utf-8"
        )
    return paths


def plot(result: dict, first_drift_batch: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = result["batches"]
    x = [b["batch"] for b in batches]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key, style in (("accuracy", "-o"), ("realised_accuracy", "--s"), ("estimated_accuracy", ":^")):
        top.plot(x, [b[key] for b in batches], style, label=key)
    top.set_ylabel("accuracy")
    top.legend(loc="lower left")
    bottom.plot(x, [b["drift_score"] for b in batches], "-o", label="drift_score (novelty share)")
    alerts = [b["batch"] for b in batches if b["drift_alert"]]
    bottom.plot(alerts, [b["drift_score"] for b in batches if b["drift_alert"]], "rx", markersize=10, label="alert")
    bottom.plot(x, [b["challenger_share"] for b in batches], "-.", label="challenger_share")
    bottom.set_xlabel("batch")
    bottom.legend(loc="upper left")
    for axis in (top, bottom):
        axis.axvline(first_drift_batch - 0.5, color="grey", linewidth=0.8)
    fig.suptitle("hwu64 stream: held-back scenarios appear from the grey line on")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hold", default="transport,cooking,news")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--val", type=int, default=600)
    parser.add_argument("--before", type=int, default=2000)
    parser.add_argument("--after", type=int, default=1500)
    parser.add_argument("--held-share", type=float, default=0.4)
    parser.add_argument("--feedback-rate", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    paths = build_files(args.out, set(args.hold.split(",")), args)
    result_path = args.out / "simulation.json"
    subprocess.run(
        [sys.executable, "manage.py", "simulate_production", "--train", str(paths["train"]), "--val", str(paths["val"]),
         "--stream", str(paths["stream"]), "--feedback-rate", str(args.feedback_rate), "--batch", str(args.batch),
         "--json", str(result_path)],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    result = json.loads(result_path.read_text(encoding="utf-8"))
    first_drift = args.before // args.batch + 1
    pre = [b for b in result["batches"] if b["batch"] < first_drift]
    summary = {
        "first_drift_batch": first_drift,
        "max_abs_estimate_minus_realised_before_drift": max(
            abs(b["estimated_accuracy"] - b["realised_accuracy"]) for b in pre
        ),
        "mean_abs_estimate_minus_realised_before_drift": sum(
            abs(b["estimated_accuracy"] - b["realised_accuracy"]) for b in pre
        )
        / len(pre),
        "first_alert_batch": next((b["batch"] for b in result["batches"] if b["drift_alert"]), None),
        "alerts_before_drift": sum(b["drift_alert"] for b in pre),
    }
    print(json.dumps({**result, "summary": summary}, indent=1))
    if args.plot:
        plot(result, first_drift, args.plot)


if __name__ == "__main__":
    main()
