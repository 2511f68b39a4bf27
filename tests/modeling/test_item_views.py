"""The model page's readable confusion (top confusions, a matrix limited to the classes involved, the
click-through to the items behind a cell), the version comparison, reliability bin counts, "items like this
one" from the feature cache, and the label check's scores handed to labeling."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from labeling.models import GoldLabel, ItemPrediction, LabelIssueScore, ReviewTask
from labeling.selectors.browser import browse_items, parse_browser_query
from modeling.engine.evaluation import plots
from modeling.models import ModelVersion
from modeling.selectors.confusion import FULL_MATRIX_MAX_CLASSES, compare_versions, confusion_view, top_confusions
from modeling.services import label_quality
from modeling.services.versions import publish_model_version
from tests.engine.vector_route import LABEL_CHECK as VECTOR_CHECK
from tests.engine.vector_route import texts_for
from tests.modeling.route1 import start_and_run, tiny_params


def _confusion(n_classes: int, off: dict[tuple[int, int], int]) -> dict:
    labels = [f"c{i:03d}" for i in range(n_classes)]
    matrix = [[10 if i == j else 0 for j in range(n_classes)] for i in range(n_classes)]
    for (i, j), count in off.items():
        matrix[i][j] = count
    return {"labels": labels, "matrix": matrix}


def test_top_confusions_are_the_largest_off_diagonal_cells():
    top = top_confusions(_confusion(5, {(0, 1): 3, (2, 4): 7, (4, 2): 1}))
    assert [(c.gold, c.predicted, c.count) for c in top] == [
        ("c002", "c004", 7),
        ("c000", "c001", 3),
        ("c004", "c002", 1),
    ]
    assert top[0].rate == pytest.approx(7 / 17)


def test_matrix_is_limited_to_the_classes_involved_beyond_30_classes():
    small = confusion_view(_confusion(12, {(0, 1): 2}))
    assert not small.limited and len(small.labels) == 12
    big = confusion_view(_confusion(118, {(5, 90): 9, (90, 5): 4, (40, 41): 2, (7, 100): 1}))
    assert big.limited and big.n_classes == 118
    assert big.labels == ["c005", "c090", "c040", "c041", "c007", "c100"]  # confused pairs side by side
    assert len(big.labels) <= FULL_MATRIX_MAX_CLASSES
    cell = {(c.gold, c.predicted): c for _, cells in big.rows for c in cells}
    assert cell[("c005", "c090")].count == 9 and cell[("c005", "c005")].diagonal


def test_reliability_diagram_shows_bin_counts():
    bins = [
        {"lower": i / 10, "upper": (i + 1) / 10, "confidence": i / 10 + 0.05, "accuracy": i / 10, "count": n}
        for i, n in enumerate([0, 0, 0, 0, 0, 3, 17, 40, 123, 301])
    ]
    svg = plots.reliability_diagram({"bins": bins, "ece": 0.05})
    labels = set(re.findall(r">\s*([^<>]+?)\s*</text>", svg))
    assert {"items per bin", "301", "123", "40", "17", "3"} <= labels


def _version(project, number: int, metrics: dict) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project,
        number=number,
        route="probe",
        taxonomy=project.taxonomy_versions.filter(status="published").first(),
        label_keys=["a", "b", "c"],
        artifacts_dir=f"/nonexistent/v{number}",
        metrics=metrics,
    )


def _split(f1: dict[str, float], matrix: list[list[int]], macro: float) -> dict:
    return {
        "accuracy": macro,
        "macro_f1": macro,
        "calibration": {"ece": 0.1},
        "per_class": {k: {"precision": v, "recall": v, "f1": v, "support": 10} for k, v in f1.items()},
        "confusion": {"labels": ["a", "b", "c"], "matrix": matrix},
    }


@pytest.mark.django_db
def test_two_versions_side_by_side(scene_project):
    val_set = {"sha256": "abc", "count": 30}
    old = _version(
        scene_project,
        1,
        {"val": _split({"a": 0.9, "b": 0.5, "c": 0.8}, [[9, 1, 0], [5, 5, 0], [0, 2, 8]], 0.73), "val_set": val_set},
    )
    new = _version(
        scene_project,
        2,
        {"val": _split({"a": 0.9, "b": 0.8, "c": 0.7}, [[9, 1, 0], [1, 9, 0], [0, 3, 7]], 0.8), "val_set": val_set},
    )
    result = compare_versions(old, new)
    assert result.split == "val" and result.same_items
    macro = next(d for d in result.metrics if d.name == "macro_f1")
    assert macro.change == pytest.approx(0.07)
    assert [row.label for row in result.per_class][:2] == ["b", "c"]  # largest F1 change first
    changed = {(c.gold, c.predicted): (c.count_a, c.count_b) for c in result.confusions}
    assert changed == {("b", "a"): (5, 1), ("c", "b"): (2, 3)}  # a→b stayed at 1, so it is not listed


@pytest.mark.django_db
def test_compare_page(client, owner, scene_project):
    _version(scene_project, 1, {"val": _split({"a": 0.5}, [[1, 1, 0], [0, 1, 0], [0, 0, 1]], 0.5)})
    _version(scene_project, 2, {"val": _split({"a": 0.6}, [[2, 0, 0], [0, 1, 0], [0, 0, 1]], 0.6)})
    client.force_login(owner)
    html = client.get("/projects/alpha/models/compare/", {"a": 1, "b": 2}).content.decode()
    assert "v1 → v2" in html and "different validation items" in html and 'data-pair="a→b"' in html
    assert client.get("/projects/alpha/models/compare/", {"a": "x"}).status_code == 200


@pytest.mark.django_db
def test_confusion_cell_opens_exactly_the_items_behind_it(client, owner, no_auto_retrain, scene_project, tiny_backbone):
    run = start_and_run(scene_project, params=tiny_params(tiny_backbone))
    assert run.status == "succeeded", run.error
    version = run.model_version
    split = "test" if version.metrics.get("test") else "val"
    confusion = version.metrics[split]["confusion"]
    client.force_login(owner)
    page = client.get(f"/projects/alpha/models/v{version.number}/").content.decode()
    assert "items per bin" in page
    assert 'id="confusion-matrix"' in page
    has_confusions = any(
        confusion["matrix"][i][j]
        for i in range(len(confusion["labels"]))
        for j in range(len(confusion["labels"]))
        if i != j
    )
    assert ('id="top-confusions"' in page) == has_confusions

    labels = confusion["labels"]
    for i, gold in enumerate(labels):
        for j, predicted in enumerate(labels):
            expected = confusion["matrix"][i][j]
            if not expected:
                continue
            response = client.get(f"/projects/alpha/models/v{version.number}/items/", {"gold": gold, "pred": predicted})
            assert response.status_code == 302
            target = urlparse(response.url)
            assert target.path == "/projects/alpha/items/"
            params = {k: v[0] for k, v in parse_qs(target.query).items()}
            assert params["model"] == version.ref and params["split"] == split
            items = list(browse_items(scene_project, parse_browser_query(params)))
            assert len(items) == expected, (gold, predicted)
    n_split = GoldLabel.objects.filter(item__project=scene_project, item__split=split).count()
    assert ItemPrediction.objects.filter(model_ref=version.ref).count() == n_split  # scored once
    row = client.get(f"/projects/alpha/models/v{version.number}/items/", {"gold": labels[0]})
    assert "pred" not in parse_qs(urlparse(row.url).query)  # a per-class row: every item of the class

    # The owner scores every item: the browser then sorts all of them by this version's confidence.
    client.post(f"/projects/alpha/models/v{version.number}/score-items/")
    assert ItemPrediction.objects.filter(model_ref=version.ref).count() == scene_project.items.count()
    ordered = list(browse_items(scene_project, parse_browser_query({"model": version.ref, "sort": "confidence"})))
    confidences = [item.pred_confidence for item in ordered]
    assert None not in confidences and confidences == sorted(confidences)


@pytest.mark.django_db
def test_items_like_this_one_from_the_published_versions_cached_features(
    client, reviewer, no_auto_retrain, scene_project, tiny_backbone
):
    run = start_and_run(scene_project, params=tiny_params(tiny_backbone))
    publish_model_version(version=run.model_version, user=None)
    item = scene_project.items.order_by("id").first()
    client.force_login(reviewer)
    fragment = client.get(f"/projects/alpha/items/{item.pk}/similar/", {"k": 4}, HTTP_HX_REQUEST="true")
    html = fragment.content.decode()
    assert fragment.status_code == 200 and 'id="similar-items"' in html
    assert html.count("<li data-item-id=") == 4 and f'data-item-id="{item.pk}"' not in html
    assert run.model_version.ref in html
    from modeling.selectors.similarity import similar_items

    near = similar_items(scene_project, item, k=10)
    scores = [n.similarity for n in near.items]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0001 for s in scores)
    assert near.searched == near.total - 1  # training cached every item's features
    assert client.get(f"/projects/alpha/items/{item.pk}/similar/").status_code == 200  # the full page


@pytest.mark.django_db
def test_items_like_this_one_search_every_item_when_the_version_serves_in_int8(
    monkeypatch, reviewer, no_auto_retrain, scene_project, tiny_backbone
):
    """Whether INT8 serves depends on this CPU's timing probe; here it is made to serve. The INT8 namespace holds
    only the validation items the quality gate scored, so the neighbours come from the trained precision's."""
    from modeling.engine import versions
    from modeling.selectors.similarity import similar_items

    def int8_when_possible(fitted, serving):
        candidate = fitted.int8_variant()
        return (candidate, "int8") if candidate is not None else (fitted, "fp32")

    monkeypatch.setattr(versions, "_serving_fitted", int8_when_possible)
    run = start_and_run(scene_project, params=tiny_params(tiny_backbone))
    publish_model_version(version=run.model_version, user=None)
    from modeling.services.serving import get_serving_model

    assert get_serving_model(scene_project).predictor.precision == "int8"
    item = scene_project.items.order_by("id").first()
    near = similar_items(scene_project, item, k=5)
    assert near.searched == near.total - 1 and len(near.items) == 5


@pytest.mark.django_db
def test_similarity_without_cached_features_says_how_to_get_them(
    client, reviewer, settings, scene_project, tiny_backbone
):
    settings.DEFAULT_BACKBONE = str(tiny_backbone)
    item = scene_project.items.first()
    client.force_login(reviewer)
    html = client.get(f"/projects/alpha/items/{item.pk}/similar/", HTTP_HX_REQUEST="true").content.decode()
    assert "Extract features for all items" in html


@pytest.mark.django_db
def test_label_check_hands_every_score_to_labeling(scene_project):
    golds = list(GoldLabel.objects.filter(item__project=scene_project).order_by("item_id")[:60])
    keys = sorted({g.label_key for g in golds})
    rng = np.random.default_rng(0)
    given = [g.label_key for g in golds]
    centres = rng.normal(size=(len(keys), 16))
    features = np.stack([centres[keys.index(k)] + 0.3 * rng.normal(size=16) for k in given]).astype(np.float32)
    given[3] = keys[(keys.index(given[3]) + 1) % len(keys)]  # one wrong label
    label_quality.queue_label_issues(
        scene_project,
        item_ids=[g.item_id for g in golds],
        label_keys=keys,
        given=given,
        texts=texts_for(features),
        **VECTOR_CHECK,
    )
    scores = {s.item_id: s for s in LabelIssueScore.objects.all()}
    assert len(scores) == len(golds)
    wrong = scores[golds[3].item_id]
    assert wrong.flagged and wrong.score == max(s.score for s in scores.values())
    flagged = {s.item_id for s in scores.values() if s.flagged}
    queued = set(ReviewTask.objects.filter(kind=ReviewTask.Kind.LABEL_ISSUE).values_list("item_id", flat=True))
    assert flagged == queued
