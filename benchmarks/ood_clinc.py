"""Out-of-scope rules on CLINC150: which score catches the most out-of-scope texts at a fixed in-scope accuracy.

    TORCH_THREADS=1 nice .venv/bin/python benchmarks/ood_clinc.py --json /tmp/ood_clinc.json

Three set-ups, each tuned on val half A and measured on val half B (``benchmarks/split_halves.py``, seed 0):
- ``with_oos``: train with its ``oos`` texts (the fallback is a trained class);
- ``without_oos``: ``oos`` dropped from train, kept in val (the fallback is never trained);
- ``near``: ``without_oos`` and also the intents in ``--near-intents`` (one domain) dropped from train; in val
  they become the fallback: near out-of-scope (same domain), while ``oos`` texts are far out-of-scope.

Rules (a text is rejected = sent to the fallback): ``msp`` (calibrated top probability under tau),
``mahalanobis`` / ``knn`` (the distance score over delta), ``msp+mahalanobis`` / ``msp+knn`` (either),
``z:msp+mahalanobis`` / ``z:msp+knn`` (one threshold on the z-sum of -log p and the distance), and where the
fallback is trained (``with_oos``) ``z:msp+mahalanobis+p(fallback)`` / ``...knn...`` (plus log p(fallback)). The
thresholds of each rule are chosen on half A as the ones with the best OOS recall among those keeping in-scope
accuracy >= ``--in-scope-accuracy``; half B reports in-scope accuracy, OOS recall and AUROC (in-scope vs OOS,
and for ``near`` separately vs near and far OOS). Features come from the app's feature cache (Django settings).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FALLBACK = "其他"
DEFAULT_NEAR = "balance,transfer,freeze_account,pin_change,report_fraud"
GRID = 60


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def halves(rows: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """The same halves as benchmarks/split_halves.py (shuffle of the file's lines with random.Random(seed))."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows[: len(rows) // 2], rows[len(rows) // 2 :]


def features_for(texts_by_split: dict[str, list[str]]) -> dict[str, np.ndarray]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sceneclf_site.settings.local")
    import django

    django.setup()
    from modeling.services import features as fs

    extractor = fs.training_extractor({}, texts_by_split["train"])
    return {split: fs.extract_with_cache(extractor, texts)[0] for split, texts in texts_by_split.items()}


def auroc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    mask = positive | negative
    if not positive.any() or not negative.any():
        return None
    return round(float(roc_auc_score(positive[mask], scores[mask])), 4)


def rule_outcome(pred, y, fb, rejected) -> tuple[float, float]:
    final = np.where(rejected, fb, pred)
    gold_oos = y == fb
    return float((final[~gold_oos] == y[~gold_oos]).mean()), float((final[gold_oos] == fb).mean())


def best_thresholds(msp, dist, pred, y, fb, target, use_msp, use_dist):
    """(tau, delta) on half A: the best OOS recall with in-scope accuracy >= target (ties: higher accuracy)."""
    taus = np.r_[0.0, np.quantile(msp, np.linspace(0, 0.5, GRID))] if use_msp else np.array([0.0])
    deltas = np.r_[np.quantile(dist, np.linspace(0.5, 1, GRID)), np.inf] if use_dist else np.array([np.inf])
    best = (-1.0, -1.0, 0.0, np.inf)
    for tau in taus:
        for delta in deltas:
            acc, rec = rule_outcome(pred, y, fb, (msp < tau) | (dist > delta))
            if acc >= target and (rec, acc) > best[:2]:
                best = (rec, acc, float(tau), float(delta))
    return best[2], best[3]


def run_setup(name: str, train, val_a, val_b, feats, args) -> dict:
    from django.conf import settings

    from modeling.engine.evaluation.calibration import fit_temperature, probabilities
    from modeling.engine.evaluation.ood import OodScorer
    from modeling.engine.routes.base import Examples, FitContext, Taxonomy
    from modeling.engine.routes.heads import HeadInputs
    from modeling.engine.versions import CalibrationParams, train_version

    keys = [*sorted({r["label"] for r in train} - {FALLBACK}), FALLBACK]
    index = {k: i for i, k in enumerate(keys)}
    fb = index[FALLBACK]
    y = {s: np.array([index[r["label"]] for r in rows]) for s, rows in (("train", train), ("a", val_a), ("b", val_b))}
    inputs = {
        s: HeadInputs(feats[s], [r["text"] for r in rows]) for s, rows in (("train", train), ("a", val_a), ("b", val_b))
    }
    ctx = FitContext(
        keys,
        Taxonomy.from_keys(keys, FALLBACK),
        Path(settings.MODEL_ROOT),
        Path(settings.FEATURE_CACHE_DIR),
        extras={"default_backbone": settings.DEFAULT_BACKBONE},
        threads=int(settings.TORCH_THREADS),
    )
    examples = {s: Examples(inputs[s].texts, [keys[c] for c in y[s]]) for s in ("train", "a")}
    version = train_version(
        "probe", {"head_kind": "linear", "hybrid": True}, examples["train"], examples["a"], ctx,
        CalibrationParams(ood_kind="none"),
    )  # fmt: skip
    head = version.fitted.head
    trained = np.unique(y["train"])
    in_a = np.isin(y["a"], trained)
    temperature = fit_temperature(head.logits(inputs["a"])[in_a], y["a"][in_a])
    probs = {s: probabilities(head.logits(inputs[s]), temperature) for s in ("a", "b")}
    dists = {}
    for kind in ("mahalanobis", "knn"):
        scorer = OodScorer.fit(kind, feats["train"], y["train"], exclude=(fb,))
        dists[kind] = {s: scorer.score(feats[s]) for s in ("a", "b")}
    report = {"temperature": round(temperature, 4), "n_train": len(train), "rules": {}}
    gold_b = y["b"] == fb
    far_b = np.array([r["orig"] == "oos" for r in val_b])
    near_b = gold_b & ~far_b
    rules = {
        "msp": (True, None),
        "mahalanobis": (False, "mahalanobis"),
        "knn": (False, "knn"),
        "msp+mahalanobis": (True, "mahalanobis"),
        "msp+knn": (True, "knn"),
    }
    in_a = y["a"] != fb
    for kind in ("mahalanobis", "knn"):
        # One score: the z-sum of -log(top probability) and the distance, standardised on in-scope half A.
        z = {}
        for part, values in (("msp", {s: -np.log(probs[s].max(1)) for s in ("a", "b")}), ("dist", dists[kind])):
            mean, std = values["a"][in_a].mean(), values["a"][in_a].std() + 1e-12
            z[part] = {s: (values[s] - mean) / std for s in ("a", "b")}
        dists[f"z:{kind}"] = {s: z["msp"][s] + z["dist"][s] for s in ("a", "b")}
        rules[f"z:msp+{kind}"] = (False, f"z:{kind}")
        if fb in trained:
            # The head's own log-probability of the trained fallback as a third standardised term.
            belief = {s: np.log(np.clip(probs[s][:, fb], 1e-12, None)) for s in ("a", "b")}
            mean, std = belief["a"][in_a].mean(), belief["a"][in_a].std() + 1e-12
            dists[f"z3:{kind}"] = {s: dists[f"z:{kind}"][s] + (belief[s] - mean) / std for s in ("a", "b")}
            rules[f"z:msp+{kind}+p(fallback)"] = (False, f"z3:{kind}")
    for rule, (use_msp, kind) in rules.items():
        da = dists[kind]["a"] if kind else np.zeros(len(y["a"]))
        db = dists[kind]["b"] if kind else np.zeros(len(y["b"]))
        msp_a, msp_b = probs["a"].max(1), probs["b"].max(1)
        tau, delta = best_thresholds(
            msp_a, da, probs["a"].argmax(1), y["a"], fb, args.in_scope_accuracy, use_msp, kind is not None
        )
        rejected = (msp_b < tau) | (db > delta)
        acc, rec = rule_outcome(probs["b"].argmax(1), y["b"], fb, rejected)
        caught = rejected | (probs["b"].argmax(1) == fb)
        # One score for the AUROC: the distance for distance rules, 1 - p for msp, their mean rank for both.
        score = (rankdata(db) + rankdata(1 - msp_b)) / 2 if kind and use_msp else db if kind else 1 - msp_b
        row = {
            "tau": round(tau, 4),
            "delta": None if not np.isfinite(delta) else round(delta, 4),
            "in_scope_accuracy": round(acc, 4),
            "oos_recall": round(rec, 4),
            "auroc": auroc(score, gold_b, ~gold_b),
        }
        if near_b.any():
            row.update(
                auroc_near=auroc(score, near_b, ~gold_b),
                auroc_far=auroc(score, far_b, ~gold_b),
                recall_near=round(float(caught[near_b].mean()), 4),
                recall_far=round(float(caught[far_b].mean()), 4),
            )
        report["rules"][rule] = row
        print(name, rule, row, flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/clinc150"))
    parser.add_argument("--near-intents", default=DEFAULT_NEAR)
    parser.add_argument("--in-scope-accuracy", type=float, default=0.95)
    parser.add_argument("--setups", default="with_oos,without_oos,near")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    near = set(args.near_intents.split(","))
    train_all, val_all = read(args.data / "train.jsonl"), read(args.data / "val.jsonl")
    for row in train_all + val_all:
        row["orig"] = row["label"]
        if row["label"] == "oos":
            row["label"] = FALLBACK
    val_a, val_b = halves(val_all)
    feats = features_for(
        {"train": [r["text"] for r in train_all], "a": [r["text"] for r in val_a], "b": [r["text"] for r in val_b]}
    )
    report = {"in_scope_accuracy_target": args.in_scope_accuracy, "near_intents": sorted(near), "setups": {}}
    for setup in args.setups.split(","):
        keep = [
            i
            for i, r in enumerate(train_all)
            if setup == "with_oos" or (r["orig"] != "oos" and (setup != "near" or r["orig"] not in near))
        ]
        train = [train_all[i] for i in keep]

        def relabel(rows: list[dict], setup: str = setup) -> list[dict]:
            return [{**r, "label": FALLBACK} if setup == "near" and r["orig"] in near else r for r in rows]

        sub = {"train": feats["train"][keep], "a": feats["a"], "b": feats["b"]}
        report["setups"][setup] = run_setup(setup, train, relabel(val_a), relabel(val_b), sub, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
