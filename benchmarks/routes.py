"""Every registered route on four public datasets, one table: macro-F1, ECE after calibration, train seconds
and predict ms/text (one text per call, as an API client sends them).

    nice -n 10 .venv/bin/python benchmarks/routes.py [--routes probe,tfidf] [--datasets smp2017,cic]
        [--budget-minutes N] [--budget lora=4,prefix=4] [--sample lora=200] [--timed lora=20]
        [--params JSON] [--json OUT]

``--budget`` sets a route's own training budget (minutes), over ``--budget-minutes``. ``--sample ROUTE=N``
scores that route on a fixed random subsample (seed 0) of N val texts and N test texts, for routes too slow
to score whole sets; the row says so. ``--timed ROUTE=N`` times N one-text calls instead of 200.

Splits (datasets are read at run time from --data-root; their text never enters the repo):
- smp2017: train → test, calibrated on dev;
- CIC: train → dev half B, calibrated on dev half A (the halves of benchmarks/split_halves.py, seed 0);
- CLINC150: train → val half B, calibrated on val half A, ``oos`` is the fallback (trained);
- HWU64: train minus a seeded 10 % slice → test, calibrated on that slice (HWU64 ships no dev split).
Each route goes through ``evaluate_files``, the engine entry point ``manage.py evaluate_dataset`` uses."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.engine.evaluation.dataset import TIMED_TEXTS, Splits, evaluate_files, read_examples
from modeling.engine.routes import route_names
from modeling.engine.routes.base import Examples

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("smp2017", "cic", "clinc150", "hwu64")
FALLBACK_LABELS = {"clinc150": "oos"}
HWU_VAL_SHARE = 0.1


def halves(examples: Examples, seed: int = 0) -> tuple[Examples, Examples]:
    """The halves benchmarks/split_halves.py writes: the file's lines shuffled with random.Random(seed)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    return _pick(examples, order[:half]), _pick(examples, order[half:])


def _pick(examples: Examples, index: list[int]) -> Examples:
    return Examples([examples.texts[i] for i in index], [examples.labels[i] for i in index])


def subsample(examples: Examples, n: int, seed: int = 0) -> Examples:
    """A fixed random subsample of n examples, in the file's order (the whole set when it has n or fewer)."""
    if n >= len(examples):
        return examples
    return _pick(examples, sorted(random.Random(seed).sample(range(len(examples)), n)))


def route_numbers(spec: str) -> dict[str, float]:
    """``"lora=4,prefix=4"`` → {"lora": 4.0, "prefix": 4.0}; an unknown route is an error that names it."""
    known = set(route_names())
    numbers: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        route, _, value = part.partition("=")
        if route not in known or not value:
            raise SystemExit(f"expected ROUTE=NUMBER with a known route, got {part!r}")
        numbers[route] = float(value)
    return numbers


def load(dataset: str, root: Path) -> Splits:
    folder = root / dataset
    if dataset == "smp2017":
        return Splits(*(read_examples(folder / f"{name}.jsonl") for name in ("train", "dev", "test")))
    if dataset in ("cic", "clinc150"):
        held = read_examples(folder / ("dev.jsonl" if dataset == "cic" else "val.jsonl"))
        val, test = halves(held)
        return Splits(read_examples(folder / "train.jsonl"), val, test)
    train = read_examples(folder / "train.jsonl")
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    cut = int(len(order) * HWU_VAL_SHARE)
    return Splits(_pick(train, order[cut:]), _pick(train, order[:cut]), read_examples(folder / "test.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", default=",".join(route_names()), help="comma list (default: every route)")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    parser.add_argument("--model-root", type=Path, default=ROOT / "var" / "models")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "features")
    parser.add_argument("--budget-minutes", type=float, default=None, help="training budget per route and dataset")
    parser.add_argument("--budget", default="", help="per-route budgets in minutes: lora=4,prefix=4")
    parser.add_argument("--sample", default="", help="per-route val/test subsample sizes: lora=200")
    parser.add_argument("--timed", default="", help="per-route number of one-text latency calls: lora=20")
    parser.add_argument("--params", default="{}", help='per-route params as JSON: {"probe": {"hybrid": false}}')
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    per_route = json.loads(args.params)
    budgets, samples, timed = (route_numbers(spec) for spec in (args.budget, args.sample, args.timed))
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    rows = []
    print(f"{'route':12} {'dataset':9} {'macro-F1':>8} {'ECE after':>9} {'train s':>8} {'ms/text':>8}", flush=True)
    for dataset in datasets:
        splits = load(dataset, args.data_root)
        for route in routes:
            route_splits = splits
            if route in samples:
                n = int(samples[route])
                route_splits = Splits(splits.train, subsample(splits.val, n), subsample(splits.test, n))
            started = time.perf_counter()
            result, _ = evaluate_files(
                route,
                route_splits,
                params=per_route.get(route, {}),
                fallback_label=FALLBACK_LABELS.get(dataset),
                budget_minutes=budgets.get(route, args.budget_minutes),
                model_root=args.model_root,
                cache_dir=args.cache_dir,
                threads=args.threads,
                timed_texts=int(timed.get(route, TIMED_TEXTS)),
                log=lambda message: print(message, file=sys.stderr),
            )
            row = {"route": route, "dataset": dataset, "wall_seconds": round(time.perf_counter() - started, 1)}
            row.update(
                {k: result[k] for k in ("macro_f1", "accuracy", "ece_after", "train_seconds", "predict_ms_per_text")}
            )
            row.update({k: result[k] for k in ("in_scope_accuracy", "oos_recall", "stopped_by_budget")})
            row.update(n_val=result["n_val"], n_test=result["n_test"], sampled=route in samples)
            row["budget_minutes"] = budgets.get(route, args.budget_minutes)
            rows.append(row)
            print(
                f"{route:12} {dataset:9} {row['macro_f1']:8.4f} {row['ece_after']:9.4f} "
                f"{row['train_seconds']:8.1f} {row['predict_ms_per_text']:8.2f}"
                + (f"  (val/test subsample {row['n_val']}/{row['n_test']})" if row["sampled"] else ""),
                flush=True,
            )
            if args.json:
                write_rows(args.json, rows)


def write_rows(path: Path, rows: list[dict]) -> None:
    """Written after every row, so a long run that is cut keeps what it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
