"""What training learns from: label definitions, doubtful labels and augmentation, each off and on.

    nice -n 10 .venv/bin/python benchmarks/training_data.py --dataset smp2017 --json var/bench/td_smp.json
    nice -n 10 .venv/bin/python benchmarks/training_data.py --dataset cic --json var/bench/td_cic.json

Route 1's default head (frozen multilingual-e5-small features from the feature cache + the hybrid linear /
character n-gram ensemble of ``heads.train_head``) is trained once per variant on the train set that
``prepare_training_set`` returns; val and test are never touched. Splits: smp2017 train -> dev (val) -> test;
CIC train -> dev halves from ``benchmarks/split_halves.py`` (half A val, half B test). The datasets carry no
taxonomy, so the script builds one from the label names at run time.

``train_head`` takes no per-text weights yet, so the ``downweight`` variant stands in for weight w = 1/k by
repeating every unflagged train item k times (the head's regularisation then sees k times more data, which
a real weight would not do).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.engine.data import TRAIN_FEATURES, TrainingDataParams, prepare_training_set
from modeling.engine.evaluation.metrics import classification_report
from modeling.engine.evaluation.robustness import PERTURBATIONS, robustness_report
from modeling.engine.routes.base import Examples, FitContext, Taxonomy
from modeling.engine.routes.heads import HeadConfig, HeadInputs, train_head

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    params: dict  # TrainingDataParams fields
    robustness: bool = False  # also score the perturbed copies of test
    flag_on_features: bool = False  # out-of-fold probabilities from the e5 features instead of TF-IDF


VARIANTS = {
    "baseline": Variant({}, robustness=True),
    "definitions": Variant({"label_definitions": True}),
    "augment_0.5": Variant({"augment": 0.5}, robustness=True),
    "noisy_drop": Variant({"noisy_labels": "drop"}),
    "noisy_downweight": Variant({"noisy_labels": "downweight"}),
    "noisy_drop_features": Variant({"noisy_labels": "drop"}, flag_on_features=True),
    "noisy_downweight_features": Variant({"noisy_labels": "downweight"}, flag_on_features=True),
    "definitions+augment_0.5": Variant({"label_definitions": True, "augment": 0.5}, robustness=True),
}
FALLBACK = {"smp2017": "chat", "cic": None}
# route 1's default (modeling/services/training.py DEFAULT_PROBE_PARAMS: linear head + hybrid)
HEAD = HeadConfig(kind="hybrid", feature_kind="linear", hybrid_mode="ensemble", loss="weighted")


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_splits(dataset: str, root: Path, seed: int, workdir: Path) -> dict[str, tuple[list[str], list[str]]]:
    folder = root / dataset
    if dataset == "cic":
        prefix = workdir / "cic_dev"
        split = [sys.executable, str(ROOT / "benchmarks" / "split_halves.py"), str(folder / "dev.jsonl")]
        subprocess.run([*split, str(prefix), "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
        return {
            "train": read_jsonl(folder / "train.jsonl"),
            "val": read_jsonl(Path(f"{prefix}_a.jsonl")),
            "test": read_jsonl(Path(f"{prefix}_b.jsonl")),
        }
    return {"train": read_jsonl(folder / "train.jsonl"), "val": read_jsonl(folder / "dev.jsonl")} | {
        "test": read_jsonl(folder / "test.jsonl")
    }


def drop_unlearnable(splits: dict, label_keys: list[str]) -> None:
    known = set(label_keys)
    for name, (texts, labels) in splits.items():
        keep = [i for i, label in enumerate(labels) if label in known]
        if len(keep) < len(labels):
            print(f"{name}: dropped {len(labels) - len(keep)} texts whose label is not in train", file=sys.stderr)
            splits[name] = ([texts[i] for i in keep], [labels[i] for i in keep])


class Features:
    """e5 features through the feature cache, with max_len chosen as training chooses it (P95, step 16)."""

    def __init__(self, backbone: str, model_root: Path, cache_dir: Path, train_texts: list[str]) -> None:
        from modeling.engine.backbones.cache import FeatureCache
        from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor
        from modeling.engine.backbones.specs import resolve_backbone

        spec = resolve_backbone(backbone, model_root)
        self.extractor = FeatureExtractor(spec, FeatureConfig.for_backbone(spec, max_len=256, threads=2))
        p95 = int(self.extractor.choose_max_len(train_texts))
        self.extractor.max_len = int(min(256, -(-p95 // 16) * 16))
        self.cache = FeatureCache(cache_dir)
        self.extracted = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        from modeling.engine.backbones.cache import cached_encode

        matrix, n_new = cached_encode(self.extractor, texts, None, self.cache)
        self.extracted += n_new
        return matrix


def emulate_weights(examples: Examples) -> tuple[list[str], list[str]]:
    """Repeat items so relative weights hold: weight w (< 1) against 1 becomes 1 copy against round(1 / w)."""
    if examples.weights is None:
        return examples.texts, examples.labels
    low = float(examples.weights.min())
    repeats = np.maximum(1, np.round(examples.weights / low)).astype(int)
    index = np.repeat(np.arange(len(examples)), repeats)
    return [examples.texts[i] for i in index], [examples.labels[i] for i in index]


def run_variant(name: str, splits: dict, label_keys: list[str], fallback: str, features: Features, seed: int):
    variant = VARIANTS[name]
    params = TrainingDataParams(**variant.params)
    ctx = FitContext(label_keys=label_keys, taxonomy=Taxonomy.from_keys(label_keys, fallback), seed=seed)
    train = Examples(*splits["train"])
    if variant.flag_on_features:
        ctx.extras[TRAIN_FEATURES] = features(train.texts)
    start = time.perf_counter()
    prepared, report = prepare_training_set(train, ctx, params)
    prepare_seconds = time.perf_counter() - start
    texts, labels = emulate_weights(prepared)
    index = {key: i for i, key in enumerate(label_keys)}
    start = time.perf_counter()
    head = train_head(
        HeadInputs(features(texts), texts),
        np.array([index[x] for x in labels]),
        HeadInputs(features(splits["val"][0]), splits["val"][0]),
        np.array([index[x] for x in splits["val"][1]]),
        len(label_keys),
        HEAD,
        seed=seed,
    )
    fit_seconds = time.perf_counter() - start

    def predict_labels(batch: list[str]) -> list[str]:
        logits = head.logits(HeadInputs(features(batch), batch))
        return [label_keys[i] for i in logits.argmax(axis=1)]

    test_texts, test_labels = splits["test"]
    predicted = predict_labels(test_texts)
    y_true = np.array([index[x] for x in test_labels])
    scores = classification_report(y_true, np.array([index[x] for x in predicted]), label_keys)
    test_inputs = HeadInputs(features(test_texts), test_texts)
    # Each ensemble member alone: tells a change in the mixing weight from a change in what the parts learned.
    part_f1 = {
        part: classification_report(y_true, p.logits(test_inputs).argmax(axis=1), label_keys)["macro_f1"]
        for part, p in zip(("features", "tfidf"), head.parts, strict=True)
    }
    row = {
        "params": variant.params,
        "prepare": report,
        "n_fit": len(texts),
        "test_macro_f1": scores["macro_f1"],
        "test_accuracy": scores["accuracy"],
        "test_macro_f1_per_part": part_f1,
        "ensemble_alpha": head.alpha,
        "prepare_seconds": round(prepare_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
    }
    if variant.robustness:
        row["robustness"] = robustness_report(predict_labels, test_texts, test_labels, seed=seed)
    return row


def print_row(name: str, row: dict) -> None:
    robust = row.get("robustness")
    drops = " ".join(f"{robust[k]['drop_macro_f1']:+7.4f}" if robust else f"{'':7}" for k in PERTURBATIONS)
    print(
        f"{name:22} {row['n_fit']:6d} {row['test_macro_f1']:7.4f} {row['test_accuracy']:7.4f} {drops} "
        f"{row['prepare_seconds']:6.1f} {row['fit_seconds']:6.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["cic", "smp2017"], required=True)
    parser.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--backbone", default="multilingual-e5-small")
    parser.add_argument("--model-root", type=Path, default=ROOT / "var" / "models")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        splits = load_splits(args.dataset, args.data_root, args.seed, Path(workdir))
    label_keys = sorted(set(splits["train"][1]))
    fallback = FALLBACK[args.dataset] or label_keys[0]
    drop_unlearnable(splits, label_keys)
    features = Features(args.backbone, args.model_root, args.cache_dir, splits["train"][0])
    report = {"dataset": args.dataset, "sizes": {k: len(v[0]) for k, v in splits.items()}, "variants": {}}
    drops = " ".join(f"{'d.' + k[:5]:>7}" for k in PERTURBATIONS)
    print(f"{'variant':22} {'n fit':>6} {'test F1':>7} {'acc':>7} {drops} {'prep s':>6} {'fit s':>6}")
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        row = run_variant(name, splits, label_keys, fallback, features, args.seed)
        report["variants"][name] = row
        report["extracted_texts"] = features.extracted
        print_row(name, row)
        if args.json:  # after every variant, so a run stopped early keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
