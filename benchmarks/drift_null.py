"""How the feature-drift alerts behave on real features: false alerts on same-distribution windows and
detection of windows in which held-back scenarios appear (modeling/engine/evaluation/drift.py).

The texts of the train and test files are pooled and shuffled (seed 0); 6 x max(--reference, --window) texts
of the kept scenarios and at most half as many of the held-back ones are embedded. Each draw (seed) splits the kept
texts afresh into a reference of `--reference` texts (what a model trained without the held-back scenarios
saw) and a disjoint window of `--window` texts: `same` of kept texts only, `mixed-P` with a share P of
held-back texts. Prints
one JSON line per window kind and novelty `k` with the novelty share, its threshold and alert count over
`--seeds` draws, and (for the first `--auc-seeds` draws, the domain classifier being slow) the domain AUC,
its threshold and alert count.

  python benchmarks/drift_null.py --data /work/shared/datasets/hwu64 --hold-back alarm,music,cooking \\
      --reference 500 --window 500 --seeds 50 --auc-seeds 10 --k 1,5,10 --cache /tmp/drift/vectors.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.extract import default_model_root
from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor
from modeling.engine.backbones.specs import resolve_backbone
from modeling.engine.evaluation.drift import (
    AUC_FLOOR,
    NOVELTY_ALPHA,
    NOVELTY_QUANTILE,
    NULL_SIGMAS,
    feature_drift,
    novelty_drift,
)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pool_vectors(args: argparse.Namespace) -> dict[str, np.ndarray]:
    if args.cache and args.cache.exists():
        with np.load(args.cache) as stored:
            return {name: stored[name] for name in stored.files}
    held = set(args.hold_back.split(","))
    rows = read(args.data / "train.jsonl") + read(args.data / "test.jsonl")
    order = np.random.default_rng(0).permutation(len(rows))
    kept = [rows[i]["text"] for i in order if rows[i]["scenario"] not in held]
    held_texts = [rows[i]["text"] for i in order if rows[i]["scenario"] in held]
    size = 3 * max(args.reference, args.window)
    pools = {"reference": kept[:size], "kept": kept[size : 2 * size], "held": held_texts[:size]}
    spec = resolve_backbone(args.backbone, default_model_root())
    extractor = FeatureExtractor(spec, FeatureConfig.for_backbone(spec, max_len=64, threads=2))
    vectors = {name: np.asarray(extractor.encode(texts)) for name, texts in pools.items()}
    if args.cache:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, **vectors)
    return vectors


def draw(vectors: dict[str, np.ndarray], share: float, seed: int, args: argparse.Namespace):
    """A reference and a window of disjoint kept texts, both drawn afresh from the kept pools, so that the
    draws of the null are independent (fixed reference and window pools would share one pool difference)."""
    pick = np.random.default_rng(seed)
    kept = np.vstack([vectors["reference"], vectors["kept"]])
    order = pick.permutation(len(kept))
    n_held = min(round(share * args.window), len(vectors["held"]))
    reference = kept[order[: args.reference]]
    window = np.vstack([
        kept[order[args.reference : args.reference + args.window - n_held]],
        vectors["held"][pick.choice(len(vectors["held"]), n_held, replace=False)],
    ])  # fmt: skip
    return reference, window


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "min": round(float(np.min(values)), 4),
            "max": round(float(np.max(values)), 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/hwu64"))
    parser.add_argument("--hold-back", default="alarm,music,cooking")
    parser.add_argument("--backbone", default="multilingual-e5-small")
    parser.add_argument("--reference", type=int, default=500)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--auc-seeds", type=int, default=10, help="draws that also run the domain classifier")
    parser.add_argument("--shares", default="0.1,0.3,0.4")
    parser.add_argument("--k", default="5", help="novelty neighbours, comma-separated to compare")
    parser.add_argument("--quantile", type=float, default=NOVELTY_QUANTILE)
    parser.add_argument("--alpha", type=float, default=NOVELTY_ALPHA)
    parser.add_argument("--no-centre", action="store_true", help="novelty distances without centring")
    parser.add_argument("--cache", type=Path, default=None, help="npz of the pools' vectors (read if present)")
    args = parser.parse_args()
    vectors = pool_vectors(args)
    kinds = {"same": 0.0, **{f"mixed-{share}": float(share) for share in args.shares.split(",")}}
    for kind, share in kinds.items():
        windows = [draw(vectors, share, seed, args) for seed in range(args.seeds)]
        aucs = [feature_drift(ref, win, seed=seed) for seed, (ref, win) in enumerate(windows[: args.auc_seeds])]
        for k in (int(value) for value in args.k.split(",")):
            novelty = [
                novelty_drift(
                    ref, win, quantile=args.quantile, alpha=args.alpha, k=k, centre=not args.no_centre, seed=seed
                )
                for seed, (ref, win) in enumerate(windows)
            ]
            print(json.dumps({
                "window": kind, "n_reference": args.reference, "n_window": args.window, "k": k,
                "quantile": args.quantile, "alpha": args.alpha, "centre": not args.no_centre, "seeds": args.seeds,
                "novelty_share": summary([r.share for r in novelty]),
                "novelty_threshold": summary([r.threshold for r in novelty]),
                "novelty_alerts": sum(r.alert for r in novelty),
                "auc_seeds": len(aucs), "auc": summary([r.auc for r in aucs]) if aucs else None,
                "auc_threshold": summary([r.threshold for r in aucs]) if aucs else None,
                "auc_floor": AUC_FLOOR, "auc_sigmas": NULL_SIGMAS, "auc_alerts": sum(r.alert for r in aucs),
                "either_alerts_of_auc_seeds": sum(r.alert or n.alert for r, n in zip(aucs, novelty, strict=False)),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
