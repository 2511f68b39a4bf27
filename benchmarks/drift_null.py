"""How the drift alert behaves on real features: false alerts on same-distribution windows and detection of
windows in which held-back scenarios appear (the threshold of modeling/engine/evaluation/drift.py).

The reference is a sample of the training file without the held-back scenarios (what a model trained on it
saw). Each window is drawn from the test file: `same` from the kept scenarios only, `mixed-P` with a share P
of texts from the held-back scenarios. Prints one JSON line per window kind with the AUC, the threshold and
the alert rate over the seeds.

  python benchmarks/drift_null.py --data /work/shared/datasets/hwu64 --hold-back alarm,music,cooking
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
from modeling.engine.evaluation.drift import AUC_FLOOR, NULL_SIGMAS, feature_drift


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/hwu64"))
    parser.add_argument("--hold-back", default="alarm,music,cooking")
    parser.add_argument("--backbone", default="multilingual-e5-small")
    parser.add_argument("--reference", type=int, default=500)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--shares", default="0.1,0.2,0.3,1.0")
    parser.add_argument("--no-same", action="store_true", help="skip the same-distribution windows")
    parser.add_argument("--floor", type=float, default=None, help="the AUC floor (default: the engine's)")
    parser.add_argument("--sigmas", type=float, default=None, help="null standard deviations (default: the engine's)")
    args = parser.parse_args()
    held = set(args.hold_back.split(","))
    train, test = read(args.data / "train.jsonl"), read(args.data / "test.jsonl")
    kept_train = [row["text"] for row in train if row["scenario"] not in held]
    kept_test = [row["text"] for row in test if row["scenario"] not in held]
    held_test = [row["text"] for row in test if row["scenario"] in held]
    spec = resolve_backbone(args.backbone, default_model_root())
    extractor = FeatureExtractor(spec, FeatureConfig.for_backbone(spec, max_len=64, threads=2))
    rng = np.random.default_rng(0)
    pools = {
        "train": rng.choice(kept_train, size=min(len(kept_train), args.reference * 3), replace=False),
        "kept": rng.choice(kept_test, size=min(len(kept_test), args.window * 3), replace=False),
        "held": rng.choice(held_test, size=min(len(held_test), args.window * 3), replace=False),
    }
    vectors = {name: np.asarray(extractor.encode(list(texts))) for name, texts in pools.items()}
    floor = AUC_FLOOR if args.floor is None else args.floor
    sigmas = NULL_SIGMAS if args.sigmas is None else args.sigmas
    kinds = {} if args.no_same else {"same": 0.0}
    kinds.update({f"mixed-{share}": float(share) for share in args.shares.split(",")})
    for kind, share in kinds.items():
        aucs, thresholds, null_means, null_stds, alerts = [], [], [], [], 0
        for seed in range(args.seeds):
            pick = np.random.default_rng(seed)
            reference = vectors["train"][pick.choice(len(vectors["train"]), args.reference, replace=False)]
            n_held = min(round(share * args.window), len(vectors["held"]))
            window = np.vstack([
                vectors["kept"][pick.choice(len(vectors["kept"]), args.window - n_held, replace=False)],
                vectors["held"][pick.choice(len(vectors["held"]), n_held, replace=False)],
            ])  # fmt: skip
            result = feature_drift(reference, window, floor=floor, null_sigmas=sigmas, seed=seed)
            aucs.append(result.auc)
            thresholds.append(result.threshold)
            null_means.append(result.null_mean)
            null_stds.append(result.null_std)
            alerts += result.alert
        print(json.dumps({
            "window": kind, "n_reference": args.reference, "n_window": args.window, "seeds": args.seeds,
            "auc_mean": round(float(np.mean(aucs)), 3), "auc_max": round(float(np.max(aucs)), 3),
            "auc_min": round(float(np.min(aucs)), 3), "threshold_mean": round(float(np.mean(thresholds)), 3),
            "null_mean": round(float(np.mean(null_means)), 3), "null_std": round(float(np.mean(null_stds)), 3),
            "floor": floor, "sigmas": sigmas,
            "alert_rate": alerts / args.seeds,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
