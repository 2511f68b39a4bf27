"""The INT8 quality gate on real data: the probe route trained once (bf16 features, as the engine picks on
this CPU), then its val and test texts scored with bf16 features and with INT8 linear layers (same head,
temperature and abstention rule). Prints macro-F1 and ECE of both, the gate's verdict as train_version
records it (on val) and the same rule applied to test, and whether this machine's timing probe would serve
INT8.

    nice -n 10 .venv/bin/python benchmarks/int8_gate.py [--datasets smp2017,cic] [--json OUT]

Splits as benchmarks/routes.py: smp2017 train → test (calibrated on dev); CIC train → dev half B (calibrated
on dev half A). Datasets are read at run time; their text never enters the repo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.routes import load
from modeling.engine.evaluation.dataset import default_calibration, label_set
from modeling.engine.routes.base import FitContext, LabelInfo, Taxonomy
from modeling.engine.serving_precision import GateResult, quality_gate
from modeling.engine.versions import Predictor, train_version

ROOT = Path(__file__).resolve().parents[1]


def predictor_on(version, fitted) -> Predictor:
    """A predictor of the version on the given Fitted, without the serving choice (no gate in its info)."""
    return Predictor(
        version.route_name,
        fitted,
        version.temperature,
        version.choice,
        version.label_keys,
        version.fallback_key,
        version.ood,
        version.explain,
    )


def figures(predictor: Predictor, examples) -> dict:
    started = time.perf_counter()
    metrics = predictor.evaluate(examples)
    return {
        "macro_f1": metrics["macro_f1"],
        "accuracy": metrics["accuracy"],
        "calibration": {"ece": metrics["calibration"]["ece"]},
        "seconds": round(time.perf_counter() - started, 2),
    }


def run(dataset: str, args) -> dict:
    splits = load(dataset, args.data_root)
    keys, fallback = label_set(splits, None, None)
    taxonomy = Taxonomy(tuple(LabelInfo(key=k, name=k) for k in keys), fallback)
    calibration = default_calibration({}, None, fallback in set(splits.train.labels))
    ctx = FitContext(
        label_keys=keys, taxonomy=taxonomy, model_root=args.model_root, cache_dir=args.cache_dir, threads=args.threads
    )
    version = train_version("probe", {}, splits.train, splits.val, ctx, calibration)
    gate = GateResult.from_dict(version.metrics["serving"]["int8_gate"])
    int8 = version.fitted.int8_variant()
    reference = figures(predictor_on(version, version.fitted), splits.test)
    quantised = figures(predictor_on(version, int8), splits.test)
    test_gate = quality_gate(gate.reference, reference, quantised, len(splits.test))
    return {
        "dataset": dataset,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test),
        "val_gate": gate.to_dict(),
        "test": {"reference": reference, "int8": quantised, "gate": test_gate.to_dict()},
        "int8_faster_here": version.fitted.int8_pays_here(int8),
        "served_precision": version.predictor().precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="smp2017,cic")
    parser.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    parser.add_argument("--model-root", type=Path, default=ROOT / "var" / "models")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "features")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        row = run(dataset, args)
        rows.append(row)
        val, test = row["val_gate"], row["test"]
        print(
            f"{dataset:8} val  macro-F1 {val['reference_macro_f1']:.4f} -> {val['candidate_macro_f1']:.4f}"
            f"  ECE {val['reference_ece']:.4f} -> {val['candidate_ece']:.4f}"
            f"  gate {'pass' if val['passed'] else 'FAIL'}",
            flush=True,
        )
        print(
            f"{dataset:8} test macro-F1 {test['reference']['macro_f1']:.4f} -> {test['int8']['macro_f1']:.4f}"
            f"  ECE {test['reference']['calibration']['ece']:.4f} -> {test['int8']['calibration']['ece']:.4f}"
            f"  rule {'pass' if test['gate']['passed'] else 'FAIL'}; INT8 faster here: {row['int8_faster_here']};"
            f" served: {row['served_precision']}",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
