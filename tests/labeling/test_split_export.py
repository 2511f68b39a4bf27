import csv
import io
import json
from collections import Counter, defaultdict

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import Item, Label, TaxonomyVersion
from labeling.services.imports import run_import, start_import
from labeling.services.projects import create_project
from labeling.services.splits import assign_splits
from labeling.text import near_duplicate_key

LABELS = ["旅行", "支付", "物流"]
WORDS = ["机票", "酒店", "退款", "快递", "扣款", "签收", "改签", "发票", "包裹", "优惠", "积分", "客服"]


def publish_taxonomy(project, keys):
    draft = TaxonomyVersion.objects.get(project=project, status=TaxonomyVersion.Status.DRAFT)
    for order, key in enumerate(keys):
        Label.objects.create(taxonomy=draft, key=key, name=key, order=order, hotkey=str(order + 1))
    draft.status = TaxonomyVersion.Status.PUBLISHED
    draft.published_at = timezone.now()
    draft.save()


def load(project, rows, name="f.jsonl"):
    data = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()
    job = start_import(project=project, content=SimpleUploadedFile(name, data), file_name=name, enqueue=False)
    return run_import(job.pk)


def dataset():
    """60 distinct labelled texts (20 per label), 12 near-duplicates of some of them, 10 unlabelled."""
    rows = []
    for index in range(60):
        label = LABELS[index % 3]
        text = f"{WORDS[index % 12]}{WORDS[(index * 5 + 1) % 12]}问题{'啊' * (index // 12)}"
        rows.append({"text": text, "label": label})
    for index in range(0, 60, 5):  # same letters, other digits/punctuation: near-duplicates
        rows.append({"text": rows[index]["text"] + f" {index}!!", "label": rows[index]["label"]})
    rows += [{"text": f"还没标注的反馈{'哦' * n}"} for n in range(10)]
    return rows


@pytest.fixture
def loaded(project):
    publish_taxonomy(project, LABELS)
    job = load(project, dataset())
    assert (job.created_count, job.rejected_count) == (82, 0)
    return project


@pytest.mark.smoke
def test_import_splits_gold_stratified_group_aware_and_leaves_unlabelled_unassigned(loaded):
    items = list(Item.objects.filter(project=loaded).select_related("gold"))
    unlabelled = [item for item in items if not hasattr(item, "gold")]
    assert {item.split for item in unlabelled} == {""}
    assert all(item.split for item in items if hasattr(item, "gold"))  # gold got its split on import

    sides_per_group = defaultdict(set)
    for item in items:
        if item.split:
            sides_per_group[near_duplicate_key(item.normalized_text)].add(item.split)
    assert all(len(sides) == 1 for sides in sides_per_group.values())
    assert len(sides_per_group) == 60

    result = assign_splits(project=loaded, seed=7)
    assert (result.assigned, result.groups, result.counts["unassigned"]) == (0, 0, 10)
    assert sum(result.counts[s] for s in ("train", "val", "test")) == 72
    for label in LABELS:
        per_split = Counter(item.split for item in items if hasattr(item, "gold") and item.gold.label_key == label)
        assert per_split["train"] >= 14 and per_split["val"] >= 2 and per_split["test"] >= 2, (label, per_split)
        assert result.per_label[label] == {s: per_split[s] for s in ("train", "val", "test")}


def test_running_the_split_again_never_moves_an_item(loaded):
    first = dict(Item.objects.values_list("id", "split"))
    assign_splits(project=loaded, seed=1)
    assign_splits(project=loaded, seed=2)
    result = assign_splits(project=loaded, train=0.5, val=0.5, test=0.0, seed=1)
    assert dict(Item.objects.values_list("id", "split")) == first
    assert result.assigned == 0
    # The new shares apply to gold labelled from now on: 12 new texts of one label, none go to test.
    job = load(loaded, [{"text": f"全新的问题{'呀' * n}", "label": "旅行"} for n in range(1, 13)], name="g.jsonl")
    assert job.labeled_count == 12
    new = Counter(Item.objects.filter(text__startswith="全新的问题").values_list("split", flat=True))
    assert new["test"] == 0 and new["train"] + new["val"] == 12 and new["val"] >= 4


def test_split_rejects_bad_shares(loaded):
    from sceneclf_site.api_errors import ServiceError

    with pytest.raises(ServiceError):
        assign_splits(project=loaded, train=0.0, val=0.5, test=0.5)


def test_split_api_and_permissions(loaded, owner, annotator):
    client = APIClient()
    client.force_authenticate(annotator)
    assert client.post(f"/api/v1/projects/{loaded.slug}/split", {}, format="json").status_code == 403
    client.force_authenticate(owner)
    response = client.post(f"/api/v1/projects/{loaded.slug}/split", {"seed": 3, "train": 0.8}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["counts"]["unassigned"] == 10 and (body["assigned"], body["groups"]) == (0, 0)
    bad = client.post(f"/api/v1/projects/{loaded.slug}/split", {"train": 2}, format="json")
    assert bad.status_code == 400


def test_export_jsonl_and_csv_round_trip(loaded, owner):
    assign_splits(project=loaded, seed=0)
    client = APIClient()
    client.force_authenticate(owner)
    response = client.get(f"/api/v1/projects/{loaded.slug}/export?fmt=jsonl")
    assert response.status_code == 200
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(rows) == 82
    labelled = [row for row in rows if row["label"]]
    assert len(labelled) == 72
    assert {row["method"] for row in labelled} == {"imported"}
    assert {row["split"] for row in labelled} == {"train", "val", "test"}

    csv_response = client.get(f"/api/v1/projects/{loaded.slug}/export?fmt=csv&only_gold=1")
    text = b"".join(csv_response.streaming_content).decode("utf-8-sig")
    csv_rows = list(csv.DictReader(io.StringIO(text)))
    assert len(csv_rows) == 72 and csv_rows[0]["label"] in LABELS

    # The CSV export imports back into another project with the same texts and labels.
    other = create_project(slug="beta", name="Beta", owner=owner)
    publish_taxonomy(other, LABELS)
    job = start_import(project=other, content=io.BytesIO(text.encode("utf-8-sig")), file_name="x.csv", enqueue=False)
    job = run_import(job.pk)
    assert (job.created_count, job.labeled_count, job.rejected_count) == (72, 72, 0)
    assert Counter(Item.objects.filter(project=other).values_list("gold__label_key", flat=True)) == Counter(
        row["label"] for row in csv_rows
    )

    assert client.get(f"/api/v1/projects/{loaded.slug}/export?fmt=xml").status_code == 400


def test_export_command(loaded, tmp_path):
    out = tmp_path / "items.csv"
    call_command("export_items", "--project", loaded.slug, "--format", "csv", "-o", str(out))
    with out.open(encoding="utf-8-sig") as handle:
        assert len(list(csv.DictReader(handle))) == 82


def test_items_page_filters_and_buttons(loaded, owner, annotator, client):
    assign_splits(project=loaded, seed=0)
    client.force_login(owner)
    base = f"/projects/{loaded.slug}/items/"
    page = client.get(base).content.decode()
    assert "82" in page and "Run split" in page and "Export CSV" in page
    assert "还没标注的反馈" not in client.get(base + "?gold=yes").content.decode()
    unlabelled = client.get(base + "?gold=no").content.decode()
    assert "还没标注的反馈" in unlabelled and "机票" not in unlabelled
    searched = client.get(base + "?q=快递").content.decode()
    assert "快递" in searched and "还没标注" not in searched
    assert client.get(base + "?split=unassigned").content.decode().count("还没标注的反馈") == 10
    assert client.get(base + "?label=支付&split=test").status_code == 200

    response = client.post(base + "split/", {"train": "0.7", "val": "0.15", "test": "0.15", "seed": "5"})
    assert response.status_code == 302
    export = client.get(base + "export/?fmt=jsonl")
    assert export.status_code == 200 and export["Content-Disposition"].endswith('.jsonl"')

    client.force_login(annotator)
    assert client.get(base).status_code == 200
    assert "Run split" not in client.get(base).content.decode()
    assert client.post(base + "split/", {}).status_code == 403
    assert client.get(base + "export/").status_code == 403


def test_items_api_lists_with_filters_and_pages(loaded, annotator):
    assign_splits(project=loaded, seed=0)
    client = APIClient()
    client.force_authenticate(annotator)  # viewing items needs only the view action
    url = f"/api/v1/projects/{loaded.slug}/items"
    first = client.get(url, {"page_size": 20}).json()
    assert first["count"] == 82 and len(first["results"]) == 20 and first["next"]
    assert client.get(url, {"has_gold": "false"}).json()["count"] == 10
    assert client.get(url, {"has_gold": "true"}).json()["count"] == 72
    assert client.get(url, {"split": "unassigned"}).json()["count"] == 10
    paid = client.get(url, {"label": "支付", "page_size": 100}).json()
    assert paid["count"] == 24 and {row["label"] for row in paid["results"]} == {"支付"}
    assert all(row["method"] == "imported" for row in paid["results"])
    assert client.get(url, {"q": "还没标注"}).json()["count"] == 10
    assert client.get(url, {"split": "bogus"}).status_code == 400
