"""3-seed comparison of active-learning strategies against random, through `manage.py simulate_active_learning`.

    nice .venv/bin/python benchmarks/active_learning.py --dataset smp2017 --json /tmp/al/smp.json
    nice .venv/bin/python benchmarks/active_learning.py --dataset smp2017 --seeds $(seq -s, 0 19)  # 3 seeds are coarse
    nice .venv/bin/python benchmarks/active_learning.py --dataset cic --batch-size 200 --rounds 25 \
        --json /tmp/al/cic.json

Datasets are read at run time from --data-dir (default /work/shared/datasets): pool = train, test = dev for cic,
test for smp2017 (override with --train/--test). Prints, per strategy, the macro-F1 curve as mean ± std over
the seeds and the labels needed to reach 95% of the full-pool macro-F1 (mean over seeds; "n/r" when a seed
never reaches it, and a lower bound that counts such a seed as the budget), and the ratio to random (an upper
bound, marked ≤, when random misses the target on some seed). Features come from the app's feature cache, so
only the first run extracts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPLITS = {
    "cic": ("train", "dev"),
    "smp2017": ("train", "test"),
    "hwu64": ("train", "test"),
    "clinc150": ("train", "val"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="smp2017")
    parser.add_argument("--data-dir", default="/work/shared/datasets")
    parser.add_argument("--train")
    parser.add_argument("--test")
    parser.add_argument("--strategy", default="all")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--plot-dir", default=None, help="write one PNG per seed here")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sceneclf_site.settings.local")
    import django

    django.setup()
    from django.core.management import call_command

    train_split, test_split = SPLITS.get(args.dataset, ("train", "test"))
    train = args.train or f"{args.data_dir}/{args.dataset}/{train_split}.jsonl"
    test = args.test or f"{args.data_dir}/{args.dataset}/{test_split}.jsonl"
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = Path(tmp) / f"seed{seed}.json"
            extra = ["--backbone", args.backbone] if args.backbone else []
            if args.plot_dir:
                Path(args.plot_dir).mkdir(parents=True, exist_ok=True)
                extra += ["--plot", f"{args.plot_dir}/{args.dataset}_seed{seed}.png"]
            started = time.perf_counter()
            call_command(
                "simulate_active_learning",
                "--train", train, "--test", test, "--strategy", args.strategy,
                "--seed-size", str(args.seed_size), "--batch-size", str(args.batch_size),
                "--rounds", str(args.rounds), "--seed", str(seed), "--json", str(out), *extra,
            )  # fmt: skip
            result = json.loads(out.read_text())
            result["seed"], result["seconds"] = seed, round(time.perf_counter() - started, 1)
            runs.append(result)
    summary = summarise(runs)
    print_summary(args.dataset, summary)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"runs": runs, "summary": summary}, indent=1), encoding="utf-8")
    return 0


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict]) -> dict:
    full = [r["full_pool_macro_f1"] for r in runs]
    out: dict = {"full_pool_macro_f1": _mean_std(full), "seconds": [r["seconds"] for r in runs], "strategies": {}}
    for name in runs[0]["strategies"]:
        curves = [r["strategies"][name]["curve"] for r in runs]
        reached = [r["strategies"][name]["labels_to_95"] for r in runs]
        budget = curves[0][-1]["labels"]
        out["strategies"][name] = {
            "labels": [p["labels"] for p in curves[0]],
            "macro_f1": [_mean_std([c[i]["macro_f1"] for c in curves]) for i in range(len(curves[0]))],
            "labels_to_95": reached,
            "labels_to_95_mean": statistics.fmean(reached) if all(n is not None for n in reached) else None,
            # A seed that never reaches the target needs more than the budget: counting it as the budget gives a
            # lower bound, so a strategy's ratio to random stays defined (as an upper bound) when random falls short.
            "labels_to_95_at_least": statistics.fmean(budget if n is None else n for n in reached),
        }
    random_bound = out["strategies"].get("random", {}).get("labels_to_95_at_least")
    for body in out["strategies"].values():
        mean = body["labels_to_95_mean"]
        body["ratio_to_random"] = round(mean / random_bound, 3) if mean is not None and random_bound else None
        body["ratio_is_upper_bound"] = None in out["strategies"].get("random", {}).get("labels_to_95", [])
    return out


def print_summary(dataset: str, summary: dict) -> None:
    full_mean, full_std = summary["full_pool_macro_f1"]
    print(f"\n{dataset}: full-pool macro-F1 {full_mean:.4f} ± {full_std:.4f}; seconds per seed {summary['seconds']}")
    for name, body in summary["strategies"].items():
        last_mean, last_std = body["macro_f1"][-1]
        reach = ", ".join("n/r" if n is None else str(n) for n in body["labels_to_95"])
        print(
            f"{name:>16}: macro-F1 at {body['labels'][-1]} labels {last_mean:.4f} ± {last_std:.4f}; "
            f"labels to 95%: [{reach}] mean {body['labels_to_95_mean']} "
            f"(at least {body['labels_to_95_at_least']:.0f}); "
            f"vs random {'≤ ' if body['ratio_is_upper_bound'] and body['ratio_to_random'] else ''}"
            f"{body['ratio_to_random']}"
        )
    print("curve (labels: mean ± std):")
    for name, body in summary["strategies"].items():
        points = "  ".join(f"{n}:{m:.3f}±{s:.3f}" for n, (m, s) in zip(body["labels"], body["macro_f1"], strict=True))
        print(f"  {name:>16} {points}")


if __name__ == "__main__":
    raise SystemExit(main())
