"""The item browser on 20k items: one page (50 rows) per filter/sort, through the real view, against the naive way
(load every item with its prediction, annotations and label-issue score into Python, then filter, sort, slice).

    nice .venv/bin/python benchmarks/item_browser.py --database-url postgres://postgres@127.0.0.1:5432/bench_browser \
        --json var/bench/browser_pg.json        # after: createdb -h 127.0.0.1 -U postgres bench_browser
    nice .venv/bin/python benchmarks/item_browser.py --json var/bench/browser_sqlite.json   # SQLite in a temp dir

The texts are generated (numbered sentences), never taken from a dataset. 60% of the items have gold, every
item has a prediction of one model version, 10% have two annotations (a third of those disagree), every gold
item has a label-issue score. Timings are the median of --repeat runs after one warm-up. This is a database
benchmark: the machine's matmul peak does not bound it, so no peak ratio is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = [f"场景{i:02d}" for i in range(30)]
QUERIES = {
    "newest first (no filter)": {"sort": "-created"},
    "lowest margin": {"sort": "margin"},
    "unsure: confidence <= 0.6, by confidence": {"conf_max": "0.6", "sort": "confidence"},
    "most disagreement": {"sort": "-disagreement"},
    "highest label-issue score": {"sort": "-issue"},
    "gold label + split + predicted label": {"label": LABELS[3], "split": "train", "pred": LABELS[4]},
    "text search": {"q": "第1234"},
}


def _setup_django(database_url: str) -> None:
    data_dir = tempfile.mkdtemp(prefix="sceneclf-bench-browser-")
    os.environ.update(DJANGO_SETTINGS_MODULE="sceneclf_site.settings.local", SCENECLF_DATA_DIR=data_dir)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _fill(n: int, seed: int):
    from django.contrib.auth import get_user_model

    from labeling.models import Annotation, GoldLabel, Item, ItemPrediction, LabelIssueScore, Role
    from labeling.services.projects import add_member, create_project
    from labeling.services.taxonomy import add_label, get_or_create_draft, publish_draft

    rng = random.Random(seed)
    users = get_user_model().objects
    run = f"{seed}-{int(time.time())}"  # a database kept from an earlier run stays usable
    owner = users.create_user(username=f"bench-owner-{run}", password="x")
    helpers = [users.create_user(username=f"bench-ann{i}-{run}", password="x") for i in range(2)]
    project = create_project(slug=f"bench-{run}", name="bench", owner=owner)
    for user in helpers:
        add_member(project=project, user=user, role=Role.ANNOTATOR)
    draft = get_or_create_draft(project=project)
    for key in LABELS:
        add_label(draft=draft, data={"key": key, "name": key})
    taxonomy = publish_draft(draft=draft).version
    texts = [f"第{i}条反馈：关于{LABELS[i % len(LABELS)]}的问题，编号{rng.randrange(10**6)}" for i in range(n)]
    items = Item.objects.bulk_create(
        [
            Item(
                project=project,
                text=t,
                normalized_text=t,
                text_hash=hashlib.sha256(t.encode()).hexdigest(),
                source=rng.choice(["web", "app", "mail"]),
                split=rng.choice(["train", "train", "train", "val", "test"]) if i % 5 < 3 else "",
            )
            for i, t in enumerate(texts)
        ],
        batch_size=2000,
    )
    gold = [item for i, item in enumerate(items) if i % 5 < 3]
    GoldLabel.objects.bulk_create(
        [GoldLabel(item=item, label_key=rng.choice(LABELS), taxonomy=taxonomy, method="imported") for item in gold],
        batch_size=2000,
    )
    predictions = []
    for item in items:
        top, second = sorted((rng.random(), rng.random()), reverse=True)
        top = 0.3 + 0.7 * top
        second = min(second, top) * (1 - top)
        label, other = rng.sample(LABELS, 2)
        predictions.append(
            ItemPrediction(
                project=project,
                item=item,
                model_ref=f"{project.slug}@v1",
                label_key=label,
                confidence=top,
                margin=top - second,
                topk=[{"label": label, "probability": top}, {"label": other, "probability": second}],
            )
        )
    ItemPrediction.objects.bulk_create(predictions, batch_size=2000)
    annotations = []
    for i, item in enumerate(items[: n // 10]):
        first = rng.choice(LABELS)
        second = first if i % 3 else rng.choice([k for k in LABELS if k != first])
        for user, label in zip(helpers, (first, second), strict=True):
            annotations.append(Annotation(item=item, annotator=user, label_key=label, taxonomy=taxonomy, time_ms=900))
    Annotation.objects.bulk_create(annotations, batch_size=2000)
    golds = GoldLabel.objects.filter(item__project=project).values_list("item_id", "label_key")
    LabelIssueScore.objects.bulk_create(
        [LabelIssueScore(item_id=i, label_key=k, score=rng.random(), suggested_label=k) for i, k in golds],
        batch_size=2000,
    )
    return project, owner


def _naive_page(project, params: dict[str, str]) -> list[int]:
    """Without database annotations: every item and its related rows into Python, then filter, sort, slice."""
    from collections import defaultdict

    from labeling.models import Annotation, Item, ItemPrediction, LabelIssueScore

    ref = f"{project.slug}@v1"
    preds = {p.item_id: p for p in ItemPrediction.objects.filter(project=project, model_ref=ref)}
    votes: dict[int, set[str]] = defaultdict(set)
    for item_id, label in Annotation.objects.filter(item__project=project).values_list("item_id", "label_key"):
        votes[item_id].add(label)
    issues = {s.item_id: s for s in LabelIssueScore.objects.filter(item__project=project)}
    rows = []
    for item in Item.objects.filter(project=project).select_related("gold"):
        gold = getattr(item, "gold", None)
        pred = preds.get(item.pk)
        issue = issues.get(item.pk)
        row = {
            "id": item.pk,
            "created": item.created_at.timestamp(),
            "confidence": pred.confidence if pred else None,
            "margin": pred.margin if pred else None,
            "pred": pred.label_key if pred else "",
            "disagreement": max(len(votes.get(item.pk, ())) - 1, 0),
            "issue": issue.score if issue and gold and issue.label_key == gold.label_key else None,
            "label": gold.label_key if gold else "",
            "split": item.split,
            "text": item.text,
        }
        rows.append(row)
    if "conf_max" in params:
        rows = [r for r in rows if r["confidence"] is not None and r["confidence"] <= float(params["conf_max"])]
    for key in ("label", "split", "pred"):
        if key in params:
            rows = [r for r in rows if r[key] == params[key]]
    if "q" in params:
        rows = [r for r in rows if params["q"] in r["text"]]
    sort = params.get("sort", "id")
    key = sort.lstrip("-")
    present = [r for r in rows if r[key] is not None]
    missing = [r for r in rows if r[key] is None]
    present.sort(key=lambda r: (r[key], r["id"]), reverse=sort.startswith("-"))
    return [r["id"] for r in (present + missing)[:50]]


def _median_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    _setup_django(args.database_url)
    from django.db import connection
    from django.test import Client

    started = time.perf_counter()
    project, owner = _fill(args.items, seed=0)
    fill_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:  # what autovacuum (PostgreSQL) does soon after a bulk import
        cursor.execute("ANALYZE")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(owner)
    url = f"/projects/{project.slug}/items/"
    results = []
    for name, params in QUERIES.items():
        query = {**params, "model": f"{project.slug}@v1"}

        def view(query=query):
            response = client.get(url, query)
            assert response.status_code == 200, response.status_code

        view_s = _median_seconds(view, args.repeat)
        naive_s = _median_seconds(lambda params=params: _naive_page(project, params), max(2, args.repeat // 2))
        results.append({"query": name, "view_ms": round(view_s * 1000, 1), "naive_ms": round(naive_s * 1000, 1)})
        print(f"{name:45s} view {view_s * 1000:8.1f} ms   naive {naive_s * 1000:8.1f} ms   ×{naive_s / view_s:5.1f}")
    report = {
        "database": connection.vendor,
        "items": args.items,
        "fill_seconds": round(fill_seconds, 1),
        "repeat": args.repeat,
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "results"}))


if __name__ == "__main__":
    main()
