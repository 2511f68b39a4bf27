"""Compare heads (TF-IDF, probes on frozen features, hybrids) on a real labelled dataset.

    nice -n 10 .venv/bin/python benchmarks/heads_compare.py --dataset cic --json /tmp/heads_cic.json
    nice -n 10 .venv/bin/python benchmarks/heads_compare.py --dataset smp2017 --heads linear,hybrid

Datasets are read at run time from ``--data-root`` (``/work/shared/datasets``; their text never enters the
repo). Splits: CIC trains on train and splits dev in two halves (seeded): val for early stopping /
calibration / thresholds, test for the figures; smp2017 uses train / dev / test. Features come from
``--backbone`` (default multilingual-e5-small, installed under ``--model-root``) through the feature cache,
so a second run extracts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.engine.evaluation.dataset import Splits, evaluate_files
from modeling.engine.routes.base import Examples

HEADS = {
    "tfidf": {"head_kind": "tfidf"},
    "linear": {"head_kind": "linear"},
    "sklearn_lr": {"head_kind": "sklearn_lr"},
    "mlp": {"head_kind": "mlp"},
    "linear_focal": {"head_kind": "linear", "loss": "focal"},
    "hybrid_ensemble": {"head_kind": "linear", "hybrid": True, "hybrid_mode": "ensemble"},
    "hybrid_concat": {"head_kind": "linear", "hybrid": True, "hybrid_mode": "concat"},
    "hybrid_sklearn_ensemble": {"head_kind": "sklearn_lr", "hybrid": True, "hybrid_mode": "ensemble"},
}
FALLBACK = {"smp2017": "chat", "cic": None}


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_splits(dataset: str, root: Path, seed: int) -> dict[str, tuple[list[str], list[str]]]:
    folder = root / dataset
    if dataset == "cic":
        dev_texts, dev_labels = read_jsonl(folder / "dev.jsonl")
        order = np.random.default_rng(seed).permutation(len(dev_texts))
        half = len(order) // 2
        pick = lambda idx: ([dev_texts[i] for i in idx], [dev_labels[i] for i in idx])  # noqa: E731
        return {"train": read_jsonl(folder / "train.jsonl"), "val": pick(order[:half]), "test": pick(order[half:])}
    return {name: read_jsonl(folder / f"{name if name != 'val' else 'dev'}.jsonl") for name in ("train", "val", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["cic", "smp2017"], required=True)
    parser.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    parser.add_argument("--heads", default=",".join(HEADS), help=f"comma list of {', '.join(HEADS)}")
    parser.add_argument("--backbone", default="multilingual-e5-small")
    parser.add_argument("--model-root", type=Path, default=Path(__file__).resolve().parents[1] / "var" / "models")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/sceneclf_bench_feature_cache"))
    parser.add_argument("--fallback", default=None, help="fallback label key (default: chat for smp2017)")
    parser.add_argument("--target-precision", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="seed of the CIC dev halves")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    splits = load_splits(args.dataset, args.data_root, args.seed)
    label_keys = sorted(set(splits["train"][1]))
    fallback = args.fallback or FALLBACK[args.dataset] or label_keys[0]
    for name, (_, labels) in splits.items():
        unknown = set(labels) - set(label_keys)
        if unknown:  # labels absent from train cannot be learned: drop those texts from val/test, say how many
            keep = [i for i, lab in enumerate(labels) if lab in set(label_keys)]
            splits[name] = ([splits[name][0][i] for i in keep], [labels[i] for i in keep])
            print(f"{name}: dropped {len(labels) - len(keep)} texts whose label is not in train", file=sys.stderr)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    data = Splits(*(Examples(*splits[name]) for name in ("train", "val", "test")))

    report = {
        "dataset": args.dataset,
        "sizes": {k: len(v[0]) for k, v in splits.items()},
        "n_labels": len(label_keys),
        "fallback": fallback,
        "heads": {},
    }
    print(
        f"{'head':26} {'test acc':>8} {'test F1':>7} {'ECE raw':>7} {'ECE cal':>7} {'T':>5} "
        f"{'cover':>6} {'sel.acc':>7} {'train s':>7}"
    )
    for name in heads:
        head = dict(HEADS[name])
        route = "tfidf" if head.pop("head_kind") == "tfidf" else "probe"
        if route == "probe":
            head = {"head_kind": HEADS[name]["head_kind"], "hybrid": False, "backbone": args.backbone, **head}
        start = time.perf_counter()
        result, predictor = evaluate_files(
            route,
            data,
            params=head,
            calibration={"abstain_target_kind": "precision", "abstain_target": args.target_precision},
            fallback_label=fallback,
            model_root=args.model_root,
            cache_dir=args.cache_dir,
            threads=args.threads,
            log=lambda message: print(message, file=sys.stderr),
        )
        seconds = time.perf_counter() - start
        described = predictor.fitted.describe()
        row = {
            "test_accuracy": result["accuracy"],
            "test_macro_f1": result["macro_f1"],
            "test_ece_before": result["ece_before"],
            "test_ece_after": result["ece_after"],
            "temperature": round(result["temperature"], 4),
            "test_coverage": result["coverage"],
            "test_selective_accuracy": result["selective_accuracy"],
            "test_oos_recall": result.get("oos_recall"),
            "test_in_scope_accuracy": result.get("in_scope_accuracy"),
            "ensemble_alpha": described.get("ensemble_alpha"),
            "best_epoch": described.get("best_epoch"),
            "train_seconds": round(seconds, 1),
        }
        report["heads"][name] = row
        print(
            f"{name:26} {row['test_accuracy']:8.4f} {row['test_macro_f1']:7.4f} "
            f"{row['test_ece_before']:7.4f} {row['test_ece_after']:7.4f} {row['temperature']:5.2f} "
            f"{row['test_coverage']:6.3f} {row['test_selective_accuracy'] or 0:7.4f} {seconds:7.1f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
