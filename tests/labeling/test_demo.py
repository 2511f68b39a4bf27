import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import RequestFactory

import labeling
from labeling.models import GoldLabel, Item, Membership, Project, TaxonomyVersion

DEMO_DIR = Path(labeling.__file__).resolve().parent / "demo"
SCENES = ["旅行", "支付", "物流", "售后", "账户", "其他"]


def demo_rows():
    return [json.loads(line) for line in (DEMO_DIR / "feedback.jsonl").read_text(encoding="utf-8").splitlines()]


def test_demo_file_has_enough_varied_texts():
    rows = demo_rows()
    assert len(rows) >= 300
    assert len({row["text"] for row in rows}) == len(rows)
    labelled = [row for row in rows if "label" in row]
    assert 0.55 <= len(labelled) / len(rows) <= 0.70
    per_scene = Counter(row["label"] for row in labelled)
    assert set(per_scene) == set(SCENES) and min(per_scene.values()) >= 20
    english = [row for row in rows if row["text"].isascii()]
    assert 15 <= len(english) <= len(rows) // 4


def test_demo_taxonomy_document_is_complete():
    document = yaml.safe_load((DEMO_DIR / "taxonomy.yaml").read_text(encoding="utf-8"))
    labels = {label["key"]: label for label in document["labels"]}
    assert list(labels) == SCENES
    assert [labels[key]["hotkey"] for key in SCENES] == ["1", "2", "3", "4", "5", "0"]
    assert labels["其他"]["is_fallback"] is True
    for label in labels.values():
        assert label["definition"] and label["decision_rules"] and label["examples"] and label["edge_cases"]


@pytest.mark.django_db
def test_bootstrap_demo_creates_everything_once(capsys):
    call_command("bootstrap_demo")
    first = capsys.readouterr().out
    assert "375 items created" in first

    project = Project.objects.get(slug="demo")
    settings = (project.name, project.language, project.overlap_k, project.agreement_share)
    assert settings == ("客服反馈场景", "zh-hans", 1, 0.1)
    published = TaxonomyVersion.objects.get(project=project, status=TaxonomyVersion.Status.PUBLISHED)
    assert sorted(published.labels.values_list("key", flat=True)) == sorted(SCENES)
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {
        "demo_owner": "owner",
        "demo_annotator": "annotator",
        "demo_annotator2": "annotator",
        "demo_reviewer": "reviewer",
    }
    for username in [*roles, "admin"]:
        # A request, as a login view passes it: django-axes checks lockouts per request.
        assert authenticate(RequestFactory().post("/accounts/login/"), username=username, password="sceneclf-demo")
    assert get_user_model().objects.get(username="admin").is_superuser

    items = Item.objects.filter(project=project)
    gold = GoldLabel.objects.filter(item__project=project)
    assert items.count() == len(demo_rows())
    assert gold.count() == sum(1 for row in demo_rows() if "label" in row)
    assert set(items.filter(gold__isnull=False).values_list("split", flat=True)) == {"train", "val", "test"}
    assert set(items.filter(gold__isnull=True).values_list("split", flat=True)) == {""}
    # The demo texts with invented phone/card/order numbers were masked on the way in.
    assert items.filter(text__contains="<PHONE>").exists() and items.filter(text__contains="<ORDER_ID>").exists()
    assert not items.filter(text__contains="13800001234").exists()

    splits = dict(items.values_list("id", "split"))
    call_command("bootstrap_demo")
    second = capsys.readouterr().out
    assert "0 items created" in second and "already published" in second
    assert Item.objects.filter(project=project).count() == len(splits)
    assert dict(Item.objects.filter(project=project).values_list("id", "split")) == splits
    assert TaxonomyVersion.objects.filter(project=project).count() == 1
