"""Incremental retraining on HWU64: forgetting, new-data macro-F1 and train time of a warm start with replay
shares, against full retraining.

    nice -n 10 .venv/bin/python benchmarks/incremental.py [--route encoder_ft] [--shares 0,0.2,0.5]
        [--budget-minutes 4] [--max-epochs 3] [--json OUT]

The story (the dataset is read at run time from --data-root; its text never enters the repo):
- HWU64 train minus a seeded 10 % slice (val, as benchmarks/routes.py) is the pool; some scenarios
  (--new-scenarios) are held back;
- v1 trains on --v1-train texts of the other scenarios and validates on the val slice of those scenarios
  (the "old val" split);
- then new gold arrives: --new-from-new texts of the held-back scenarios and --new-from-old more texts of
  the old ones; the val slice of the held-back scenarios joins validation ("new val");
- incremental runs continue from v1's route folder (``FitContext.warm_start``) on the new gold plus a replay
  sample of v1's train (``modeling.engine.data.replay``) per share; full retraining starts cold on all gold.

Every figure is macro-F1 of the top label (before abstention): on old val (forgetting: the delta against v1),
on new val, and on the whole test file. Train time is the route's fit alone, as a ratio to full retraining's in
the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.engine.data.replay import incremental_selection
from modeling.engine.evaluation.forgetting import forgetting_report, top_label_macro_f1
from modeling.engine.routes.base import Examples, FitContext, Taxonomy
from modeling.engine.versions import ROUTE_DIR, Predictor, train_version

FALLBACK = "其他"
DEFAULT_NEW_SCENARIOS = ("cooking", "music", "transport", "weather")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def examples(rows: list[dict[str, str]]) -> Examples:
    return Examples([r["text"] for r in rows], [r["label"] for r in rows])


def label_keys(*row_sets: list[dict[str, str]]) -> list[str]:
    return [*sorted({r["label"] for rows in row_sets for r in rows}), FALLBACK]


def splits(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.data_root) / "hwu64"
    train = read_rows(root / "train.jsonl")
    random.Random(0).shuffle(train)
    cut = int(len(train) * 0.1)
    val, pool = train[:cut], train[cut:]
    new = set(args.new_scenarios.split(","))
    old_pool = [r for r in pool if r["scenario"] not in new]
    new_pool = [r for r in pool if r["scenario"] in new]
    return {
        "v1_train": old_pool[: args.v1_train],
        "new_gold": new_pool[: args.new_from_new] + old_pool[args.v1_train : args.v1_train + args.new_from_old],
        "old_val": [r for r in val if r["scenario"] not in new],
        "new_val": [r for r in val if r["scenario"] in new],
        "test": read_rows(root / "test.jsonl"),
    }


def context(keys: list[str], args: argparse.Namespace, warm_start: Path | None = None) -> FitContext:
    return FitContext(
        label_keys=keys,
        taxonomy=Taxonomy.from_keys(keys, FALLBACK),
        model_root=Path(args.model_root),
        cache_dir=Path(args.cache_dir),
        seed=0,
        threads=args.threads,
        warm_start=warm_start,
    )


def route_params(args: argparse.Namespace) -> dict[str, Any]:
    if args.route == "encoder_ft":
        return {"max_epochs": args.max_epochs}
    return {}


def train(
    name: str, rows: list[dict[str, str]], val_rows: list[dict[str, str]], keys: list[str], folder: Path,
    args: argparse.Namespace, warm_start: Path | None = None,
) -> tuple[Predictor, dict[str, Any]]:  # fmt: skip
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {len(rows)} train texts", flush=True)
    version = train_version(
        args.route, route_params(args), examples(rows), examples(val_rows), context(keys, args, warm_start),
        budget_minutes=args.budget_minutes if args.route == "encoder_ft" else None,
    )  # fmt: skip
    version.save(folder)
    predictor = Predictor.load(folder, model_root=Path(args.model_root))
    warm = version.metrics.get("warm_start") or {}
    info = {
        "run": name,
        "n_train": len(rows),
        "train_seconds": version.metrics["train_seconds"],
        "stopped_by_budget": version.metrics["stopped_by_budget"],
        "best_epoch": version.metrics.get("best_epoch"),
        "warm_start_used": warm.get("used"),
    }
    return predictor, info


def measure(predictor: Predictor, v1: Predictor, data: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    test = examples([r for r in data["test"] if r["label"] in set(predictor.label_keys)])
    forgetting = forgetting_report(v1, predictor, examples(data["old_val"]))
    return {
        **info,
        "old_val_macro_f1": forgetting["old_val_macro_f1_after"],
        "forgetting_delta": forgetting["delta"],
        "new_val_macro_f1": round(top_label_macro_f1(predictor, examples(data["new_val"])), 4),
        "test_macro_f1": round(top_label_macro_f1(predictor, test), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="/work/shared/datasets")
    parser.add_argument("--model-root", default="/work/main/var/models")
    parser.add_argument("--cache-dir", default="/tmp/incremental-cache")
    parser.add_argument("--out", default="/tmp/incremental-versions")
    parser.add_argument("--route", default="encoder_ft")
    parser.add_argument("--shares", default="0,0.2,0.5")
    parser.add_argument("--new-scenarios", default=",".join(DEFAULT_NEW_SCENARIOS))
    parser.add_argument("--v1-train", type=int, default=1500)
    parser.add_argument("--new-from-new", type=int, default=600)
    parser.add_argument("--new-from-old", type=int, default=200)
    parser.add_argument("--budget-minutes", type=float, default=4.0)
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = splits(args)
    out = Path(args.out) / args.route
    v1_keys = label_keys(data["v1_train"])
    all_keys = label_keys(data["v1_train"], data["new_gold"])
    val_rows = data["old_val"] + data["new_val"]
    v1, v1_info = train("v1", data["v1_train"], data["old_val"], v1_keys, out / "v1", args)
    results = [measure(v1, v1, data, v1_info)]
    print(json.dumps(results[-1]), flush=True)
    gold = data["v1_train"] + data["new_gold"]
    ids = list(range(len(gold)))
    previous = [[i, gold[i]["label"]] for i in range(len(data["v1_train"]))]
    for share in (float(s) for s in args.shares.split(",")):
        selection = incremental_selection(ids, [r["label"] for r in gold], previous, share=share, seed=0)
        rows = [gold[i] for i in selection.train]
        warm = out / "v1" / ROUTE_DIR
        name = f"incremental, replay {share:g}"
        predictor, info = train(name, rows, val_rows, all_keys, out / f"share-{share:g}", args, warm)
        results.append(measure(predictor, v1, data, {**info, "n_replay": selection.report["n_replay"]}))
        print(json.dumps(results[-1]), flush=True)
    predictor, info = train("full retraining (cold)", gold, val_rows, all_keys, out / "full", args)
    results.append(measure(predictor, v1, data, info))
    print(json.dumps(results[-1]), flush=True)
    full_seconds = results[-1]["train_seconds"]
    for row in results:
        row["train_time_vs_full"] = round(row["train_seconds"] / full_seconds, 3) if full_seconds else None
    sizes = {k: len(v) for k, v in data.items()}
    report = {"route": args.route, "sizes": sizes, "args": vars(args), "results": results}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
