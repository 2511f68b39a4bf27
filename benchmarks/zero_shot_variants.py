"""Zero-shot variants side by side on one labelled file: which scorer, prior correction and combination win.

    nice -n 10 python benchmarks/zero_shot_variants.py --data /work/shared/datasets/smp2017/test.jsonl \\
        --taxonomy /tmp/smp_taxonomy.json [--n 300] [--shortlist 10] [--json OUT]

The taxonomy file is JSON: {"fallback": KEY, "labels": [{"key", "name", "definition", "examples"}, ...]}
(names and definitions only; no dataset text). The decoder scores every label when there are at most
--full-labels of them, otherwise only the encoder's shortlist (its full-label variants are then skipped).
Texts are read at run time; none are stored in the repo.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.extract import default_model_root
from benchmarks.lora_train import read_split
from benchmarks.machine import cpu_model
from modeling.engine.routes import parse_params
from modeling.engine.routes.base import LabelInfo, Taxonomy
from modeling.engine.routes.zero_shot import ZeroShotModel, label_passages, standardise


def read_taxonomy(path: Path) -> Taxonomy:
    data = json.loads(path.read_text(encoding="utf-8"))
    labels = tuple(
        LabelInfo(
            key=item["key"],
            name=item.get("name", ""),
            definition=item.get("definition", ""),
            examples=tuple(item.get("examples", ())),
        )
        for item in data["labels"]
    )
    return Taxonomy(labels, data["fallback"])


def metrics(gold: list[str], keys: list[str], scores: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = [keys[i] for i in scores.argmax(1)]
    return {
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "macro_f1": round(float(f1_score(gold, predicted, average="macro", labels=sorted(set(gold)))), 4),
    }


def subsample(n_total: int, n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(0).choice(n_total, size=min(n, n_total), replace=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--taxonomy", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--shortlist", type=int, default=10)
    parser.add_argument("--full-labels", type=int, default=40)
    parser.add_argument("--prior-texts", type=int, default=64)
    parser.add_argument("--model-root", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data = read_split(args.data)
    taxonomy = read_taxonomy(args.taxonomy)
    keys = [label.key for label in taxonomy.labels]
    picked = subsample(len(data), args.n)
    texts, gold = [data.texts[i] for i in picked], [data.labels[i] for i in picked]
    params = parse_params("zero_shot", {"prior": "none", "prior_texts": args.prior_texts})
    model = ZeroShotModel(keys, params, taxonomy, args.model_root or default_model_root())
    model.build()
    passages = label_passages(taxonomy, keys)
    priors = {}
    for kind in ("content_free", "taxonomy"):
        model.params = params.model_copy(update={"prior": kind})
        priors[kind] = model.measure_prior(passages)
    model.params = params

    start = time.perf_counter()
    sims, _ = model.similarities(texts)
    encoder_seconds = time.perf_counter() - start
    k = min(args.shortlist, len(keys))
    which = np.argsort(-sims, axis=1)[:, :k]
    keep = np.zeros_like(sims, dtype=bool)
    np.put_along_axis(keep, which, True, axis=1)
    full = len(keys) <= args.full_labels
    start = time.perf_counter()
    decoder_lp = model.decoder_logprobs(texts, None if full else which)
    decoder_seconds = time.perf_counter() - start
    scorer = model.decoder_scorer()[0]
    lengths = scorer.label_lengths()

    variants = {"encoder_prototypes": sims}
    if full:
        variants["decoder_naive"] = decoder_lp
        variants["decoder_length_norm"] = decoder_lp / lengths[None, :]
        variants["decoder_content_free"] = decoder_lp - priors["content_free"][None, :]
        variants["decoder_taxonomy_prior"] = decoder_lp - priors["taxonomy"][None, :]
    short_lp = np.where(keep, decoder_lp, -np.inf)
    variants["shortlist_decoder_taxonomy_prior"] = np.where(keep, short_lp - priors["taxonomy"], -np.inf)
    for prior_name in ("none", "content_free", "taxonomy"):
        prior = priors.get(prior_name, np.zeros(len(keys)))
        dec = standardise(np.where(keep, short_lp - prior, 0.0), keep)
        for weight in (0.5, 1.0, 2.0):
            combined = np.where(keep, standardise(sims, keep) + weight * dec, -np.inf)
            variants[f"combined_prior_{prior_name}_w{weight}"] = combined
    result = {
        "cpu": cpu_model(),
        "data": str(args.data),
        "n_texts": len(texts),
        "n_labels": len(keys),
        "shortlist": k,
        "shortlist_recall": round(
            float(np.mean([g in [keys[j] for j in row] for g, row in zip(gold, which, strict=True)])), 4
        ),
        "majority_share": round(max(gold.count(x) for x in set(gold)) / len(gold), 4),
        "encoder_ms_per_text": round(1000 * encoder_seconds / len(texts), 1),
        "decoder_ms_per_text": round(1000 * decoder_seconds / len(texts), 1),
        "decoder_scored": "all labels" if full else f"the encoder's top {k}",
        "variants": {name: metrics(gold, keys, scores) for name, scores in variants.items()},
    }
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
