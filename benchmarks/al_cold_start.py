"""Cold start of active learning: the first batch chosen by the zero-shot model against today's k-means cold start.

    nice -n 10 .venv/bin/python benchmarks/al_cold_start.py --dataset smp2017 --taxonomy TAX.json \
        [--seeds 0,1,2,3,4] [--batch-size 100] [--rounds 5] [--method encoder] [--json OUT]

The pool is the dataset's train file, the test file as in benchmarks/active_learning.py. The taxonomy file (the
export format: keys, names, definitions, examples, one fallback) is read at run time and kept outside the repo.
For each seed, the first `--batch-size` labels are picked by:

- `random`: a seeded random sample (what `simulate_active_learning` starts from);
- `kmeans`: `active.cold_start`, the app's cold start without a taxonomy (k-means of the pool, proportional);
- `zero_shot_margin_diverse`: uncertain + diverse under the zero-shot probabilities of the `zero_shot` route
  (built from the taxonomy alone): margin_diverse, as after a trained model;
- `zero_shot`: `active.zero_shot_cold_start`, the app's cold start with a taxonomy: each predicted label's most
  confident texts in turn.

Then every start runs the same `--rounds` rounds of margin_diverse with the route-1 probe on the pool's e5
features (`active.simulate`). Prints the test macro-F1 after each round (mean ± std over seeds), the labels of
the first batch that are distinct classes, and the zero-shot model's own test macro-F1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPLITS = {"cic": ("train", "dev"), "smp2017": ("train", "test"), "hwu64": ("train", "test")}
STARTS = ("random", "kmeans", "zero_shot_margin_diverse", "zero_shot")


def build_zero_shot(taxonomy_path: Path, method: str):
    from django.conf import settings

    from modeling.engine.routes.base import Examples, FitContext
    from modeling.engine.versions import train_version
    from modeling.management.commands.evaluate_dataset import _taxonomy

    taxonomy = _taxonomy(taxonomy_path)
    keys = [label.key for label in taxonomy.labels]
    params = {"method": method, "encoder": settings.DEFAULT_BACKBONE}
    ctx = FitContext(keys, taxonomy, model_root=Path(settings.MODEL_ROOT), threads=int(settings.TORCH_THREADS))
    return train_version("zero_shot", params, Examples([], []), Examples([], []), ctx).predictor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="smp2017")
    parser.add_argument("--data-dir", default="/work/shared/datasets")
    parser.add_argument("--taxonomy", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--method", default="encoder", choices=["encoder", "combined", "decoder"])
    parser.add_argument("--json", dest="json_out", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sceneclf_site.settings.local")
    import django

    django.setup()
    from modeling.engine.routes.base import Examples
    from modeling.engine.selection import active
    from modeling.services.label_quality import encode_texts, read_labelled_jsonl

    train_split, test_split = SPLITS.get(args.dataset, ("train", "test"))
    pool = read_labelled_jsonl(f"{args.data_dir}/{args.dataset}/{train_split}.jsonl")
    test = read_labelled_jsonl(f"{args.data_dir}/{args.dataset}/{test_split}.jsonl")
    pool_x, test_x = encode_texts(pool.texts, None), encode_texts(test.texts, None)
    classes = sorted(set(pool.labels) | set(test.labels))
    index = {key: i for i, key in enumerate(classes)}
    pool_y, test_y = np.array([index[k] for k in pool.labels]), np.array([index[k] for k in test.labels])

    started = time.perf_counter()
    predictor = build_zero_shot(args.taxonomy, args.method)
    scored = predictor.score(pool.texts)
    zs_seconds = time.perf_counter() - started
    zs_probs, zs_features = np.asarray(scored.probs), scored.features
    zs_test = predictor.evaluate(Examples(test.texts, test.labels))
    print(f"zero-shot ({args.method}) test macro-F1 {zs_test['macro_f1']:.4f}, accuracy {zs_test['accuracy']:.4f}; "
          f"built and scored {len(pool.texts)} pool texts in {zs_seconds:.0f} s")  # fmt: skip

    curves: dict[str, list[list[float]]] = {name: [] for name in STARTS}
    first_classes: dict[str, list[int]] = {name: [] for name in STARTS}
    for seed in [int(s) for s in args.seeds.split(",")]:
        starts = {
            "random": active.initial_seed_set(pool_x, args.batch_size, seed),
            "kmeans": active.cold_start(pool_x, args.batch_size, seed=seed),
            "zero_shot_margin_diverse": active.select_batch(
                "margin_diverse", args.batch_size, probs=zs_probs, features=zs_features, seed=seed
            ),
            "zero_shot": active.zero_shot_cold_start(zs_probs, args.batch_size),
        }
        for name, start in starts.items():
            result = active.simulate(
                "margin_diverse", pool_x, pool_y, test_x, test_y, len(classes), start, args.batch_size, args.rounds,
                seed=seed,
            )  # fmt: skip
            curves[name].append([p.macro_f1 for p in result.curve])
            first_classes[name].append(len(set(pool_y[start])))
            print(f"seed {seed} {name:>24}: " + " ".join(f"{p.labels}:{p.macro_f1:.3f}" for p in result.curve))
    labels = [args.batch_size * (r + 1) for r in range(args.rounds + 1)]
    summary = {}
    print(f"\n{args.dataset}: test macro-F1 after each round (mean ± std over {len(curves['random'])} seeds)")
    print(f"{'start':>24} {'classes in batch 1':>18}  " + "  ".join(f"{n:>13}" for n in labels))
    for name, runs in curves.items():
        points = [(statistics.fmean(c), statistics.pstdev(c)) for c in zip(*runs, strict=True)]
        summary[name] = {"labels": labels, "macro_f1": points, "classes_in_first_batch": first_classes[name]}
        covered = statistics.fmean(first_classes[name])
        print(f"{name:>24} {covered:>18.1f}  " + "  ".join(f"{m:.3f} ± {s:.3f}" for m, s in points))
    if args.json_out:
        args.json_out.write_text(
            json.dumps({"zero_shot_test": zs_test, "summary": summary}, indent=1, default=float), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
