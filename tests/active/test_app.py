"""Active learning inside the app: scoring writes queue priorities, new gold labels trigger a retrain and a
re-score that changes the next item, the label check fills the review queue, and the owner's page."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.urls import reverse

from labeling.models import Item, ItemSuggestion, ReviewTask
from labeling.selectors.workspace import eligible_item_ids
from labeling.services.gold import set_gold
from labeling.services.items import get_or_create_item
from modeling.models import ActiveLearningRound, ModelVersion, TrainingRun
from modeling.services import active_learning, label_quality, training
from tests.engine.vector_route import LABEL_CHECK as VECTOR_CHECK
from tests.engine.vector_route import texts_for
from tests.modeling.route1 import add_gold_items, publish_scene_taxonomy, scene_texts, tiny_params

POOL_TEXTS = [
    f"{opener}{word}{closer}"
    for opener in ("这次", "昨天", "听说")
    for word in ("付款失败", "快递没到", "机票改签", "密码忘了", "退货申请", "天气不错", "航班延误", "包裹丢了")
    for closer in ("吧", "哦")
]


@pytest.fixture
def al_project(project):
    taxonomy = publish_scene_taxonomy(project)
    add_gold_items(project, scene_texts(30), taxonomy)
    for text in POOL_TEXTS:
        get_or_create_item(project=project, text=text, source="pool")
    project.retrain_every_n_gold = 4
    project.save(update_fields=["retrain_every_n_gold"])
    return project, taxonomy


def _pool_priorities(project) -> dict[int, float]:
    return dict(Item.objects.filter(project=project, gold__isnull=True).values_list("id", "priority"))


@pytest.mark.django_db
def test_cold_start_without_a_taxonomy_clusters_the_pool(project, settings, tiny_backbone):
    settings.DEFAULT_BACKBONE = str(tiny_backbone)
    for text in POOL_TEXTS:
        get_or_create_item(project=project, text=text, source="pool")
    active_learning.update_al_settings(project=project, batch_size=6)
    round_ = active_learning.score_pool(project)
    assert round_.strategy == "cold_start" and round_.model_version is None
    assert len(round_.batch_item_ids) == 6 and round_.pool_size == len(POOL_TEXTS)
    priorities = _pool_priorities(project)
    assert {i for i, p in priorities.items() if p > 1.0} == set(round_.batch_item_ids)
    assert not ItemSuggestion.objects.filter(item__project=project).exists()


@pytest.mark.django_db
def test_zero_shot_cold_start_covers_the_predicted_labels_and_suggests(al_project, settings, tiny_backbone):
    from modeling.engine.selection import active
    from modeling.services.zero_shot import score_texts

    project, taxonomy = al_project
    settings.DEFAULT_BACKBONE = str(tiny_backbone)
    active_learning.update_al_settings(project=project, batch_size=6)
    round_ = active_learning.score_pool(project)

    assert round_.strategy == "zero_shot" and round_.model_version is None
    assert len(set(round_.batch_item_ids)) == 6
    priorities = _pool_priorities(project)
    assert {i for i, p in priorities.items() if p > 1.0} == set(round_.batch_item_ids)
    # The batch takes each predicted label's most confident item before any label's second one.
    pool = list(Item.objects.filter(project=project, gold__isnull=True).order_by("id").values_list("id", "text"))
    zero = score_texts(project, [text for _, text in pool])
    predicted, confidence = zero.probs.argmax(1), zero.probs.max(1)
    row = {item_id: k for k, (item_id, _) in enumerate(pool)}
    picked = [row[i] for i in round_.batch_item_ids]
    labels = sorted(set(predicted.tolist()))
    assert len({predicted[k] for k in picked}) == min(6, len(labels))
    for k in picked:
        same = np.flatnonzero(predicted == predicted[k])
        assert confidence[k] >= np.sort(confidence[same])[::-1][: max(1, 6 // len(labels) + 1)].min()
    assert (active.zero_shot_cold_start(zero.probs, 6) == picked).all()
    # Every pool item gets the zero-shot top label as its suggestion, marked as zero-shot.
    suggestions = ItemSuggestion.objects.filter(item__project=project)
    assert suggestions.count() == len(pool)
    assert {s.model_ref for s in suggestions} == {f"zero-shot:t{taxonomy.number}"}
    assert all(s.is_zero_shot for s in suggestions)
    best = dict(zip([i for i, _ in pool], zero.probs.argmax(1), strict=True))
    assert all(s.label_key == zero.label_keys[best[s.item_id]] for s in suggestions)


@pytest.mark.django_db
def test_the_owner_can_keep_the_cluster_start_with_zero_shot_suggestions(al_project, settings, tiny_backbone):
    project, taxonomy = al_project
    settings.DEFAULT_BACKBONE = str(tiny_backbone)
    settings.ZERO_SHOT_COLD_START = False
    active_learning.update_al_settings(project=project, batch_size=6)
    round_ = active_learning.score_pool(project)
    assert round_.strategy == "cold_start" and len(round_.batch_item_ids) == 6
    refs = set(ItemSuggestion.objects.filter(item__project=project).values_list("model_ref", flat=True))
    assert refs == {f"zero-shot:t{taxonomy.number}"}


@pytest.mark.django_db
def test_zero_shot_model_is_built_once_per_taxonomy_version(al_project, settings, tiny_backbone):
    from labeling.services.taxonomy import add_label, create_draft, publish_draft
    from modeling.services import zero_shot

    project, _ = al_project
    settings.DEFAULT_BACKBONE = str(tiny_backbone)
    _, first = zero_shot.zero_shot_predictor(project)
    folder = zero_shot.model_folder(project, first, zero_shot.zero_shot_params())
    manifest = (folder / "manifest.json").read_text()
    zero_shot.zero_shot_predictor(project)
    assert (folder / "manifest.json").read_text() == manifest  # reused, not rebuilt

    (folder / "route" / "zero_shot.json").write_text("{}")  # a changed file: the folder no longer verifies
    zero_shot.zero_shot_predictor(project)
    assert (folder / "manifest.json").read_text() != manifest
    assert json.loads((folder / "route" / "zero_shot.json").read_text())["label_keys"]

    draft = create_draft(project=project)
    add_label(draft=draft, data={"key": "天气", "name": "天气", "definition": "天气和气温"})
    newer = publish_draft(draft=draft).version
    predictor, used = zero_shot.zero_shot_predictor(project)
    assert used == newer and "天气" in predictor.label_keys
    assert not folder.exists()  # the older taxonomy's model is gone
    assert zero_shot.model_folder(project, newer, zero_shot.zero_shot_params()).exists()


@pytest.mark.django_db
def test_new_gold_labels_retrain_rescore_and_change_the_next_item(
    al_project, tiny_backbone, annotator, django_capture_on_commit_callbacks
):
    project, taxonomy = al_project
    active_learning.update_al_settings(project=project, strategy="margin", batch_size=5)
    with django_capture_on_commit_callbacks(execute=True):
        first_run = training.start_training_run(project=project, params=tiny_params(tiny_backbone))
    first_run.refresh_from_db()
    assert first_run.status == TrainingRun.Status.SUCCEEDED, first_run.error
    first_round = ActiveLearningRound.objects.get(project=project)  # scored after the new version appeared
    assert first_round.trigger == "after_training" and first_round.model_version.number == 1
    next_before = eligible_item_ids(project, annotator)[0]
    assert next_before == first_round.batch_item_ids[0]
    before = _pool_priorities(project)

    # Three new gold labels: below retrain_every_n_gold (4), nothing happens.
    batch = Item.objects.in_bulk(first_round.batch_item_ids)
    labels = ["支付", "物流", "旅行", "账户"]
    with django_capture_on_commit_callbacks(execute=True):
        for item_id, label in zip(first_round.batch_item_ids[:3], labels, strict=False):
            set_gold(item=batch[item_id], label_key=label, taxonomy=taxonomy, method="single")
    assert not TrainingRun.objects.filter(project=project, trigger="auto_retrain").exists()

    # The fourth reaches the threshold: a retrain starts, a new version appears, the pool is re-scored.
    with django_capture_on_commit_callbacks(execute=True):
        set_gold(item=batch[first_round.batch_item_ids[3]], label_key=labels[3], taxonomy=taxonomy, method="single")
    auto = TrainingRun.objects.get(project=project, trigger="auto_retrain")
    assert auto.status == TrainingRun.Status.SUCCEEDED, auto.error
    assert auto.params["backbone"] == str(tiny_backbone)  # same settings as the last run
    assert not Item.objects.filter(project=project, gold__isnull=False, split="").exists()  # split re-run
    assert ModelVersion.objects.filter(project=project).count() == 2
    latest = ActiveLearningRound.objects.filter(project=project).first()
    assert latest.model_version.number == 2 and latest.trigger == "after_training"
    after = _pool_priorities(project)
    assert set(after) == set(before) - set(first_round.batch_item_ids[:4])
    assert any(after[i] != before[i] for i in after)  # the new model re-ranked the pool
    next_after = eligible_item_ids(project, annotator)[0]
    assert next_after == latest.batch_item_ids[0] and next_after != next_before
    assert latest.agreement is not None and 0.0 <= latest.agreement <= 1.0  # stop set compared v1 vs v2


@pytest.mark.django_db
def test_label_check_queues_flipped_labels_and_conflicts(project):
    import numpy as np

    taxonomy = publish_scene_taxonomy(project)
    rows = scene_texts(12)
    items = add_gold_items(project, rows, taxonomy)
    keys = sorted({label for _, label in rows})
    true = np.array([keys.index(label) for _, label in rows])
    rng = np.random.default_rng(0)
    features = np.hstack([np.eye(len(keys))[true] * 4, rng.normal(size=(len(rows), 32))])  # distinct texts: low cosine
    given = [label for _, label in rows]
    flipped = [3, 17, 40]
    for i in flipped:
        given[i] = keys[(true[i] + 1) % len(keys)]
    features[50] = features[51] = features[51] + 0.001  # near duplicates...
    given[50], given[51] = keys[0], keys[1]  # ...with different labels
    created = label_quality.queue_label_issues(
        project,
        item_ids=[i.pk for i in items],
        label_keys=keys,
        given=given,
        n_folds=3,
        texts=texts_for(features),
        **VECTOR_CHECK,
    )
    issues = ReviewTask.objects.filter(project=project, kind=ReviewTask.Kind.LABEL_ISSUE)
    flagged_items = set(issues.values_list("item_id", flat=True))
    assert {items[i].pk for i in flipped} <= flagged_items
    task = issues.get(item_id=items[flipped[0]].pk)
    assert task.suggested_label == rows[flipped[0]][1] and task.topk[0]["label"] == task.suggested_label
    conflict = ReviewTask.objects.get(project=project, kind=ReviewTask.Kind.CONFLICT)
    assert {conflict.item_id, conflict.neighbours[0]["item_id"]} == {items[50].pk, items[51].pk}
    assert created["conflict"] == 1 and created["label_issue"] == issues.count()
    again = label_quality.queue_label_issues(
        project,
        item_ids=[i.pk for i in items],
        label_keys=keys,
        given=given,
        n_folds=3,
        texts=texts_for(features),
        **VECTOR_CHECK,
    )
    assert again == {"label_issue": 0, "conflict": 0}  # open tasks are not queued twice


@pytest.mark.django_db
def test_active_learning_page_and_settings(al_project, client, owner, annotator):
    project, _ = al_project
    url = reverse("modeling:active_learning", args=[project.slug])
    client.force_login(annotator)
    page = client.get(url)
    assert page.status_code == 200 and b"queue-counts" in page.content
    settings_url = reverse("modeling:active_learning_settings", args=[project.slug])
    assert client.post(settings_url, {"strategy": "entropy", "batch_size": "7"}).status_code == 403
    client.force_login(owner)
    client.post(settings_url, {"strategy": "entropy", "batch_size": "7", "auto_retrain": "on"})
    row = project.active_learning
    row.refresh_from_db()
    assert (row.strategy, row.batch_size, row.auto_retrain) == ("entropy", 7, True)
    client.post(settings_url, {"strategy": "magic", "batch_size": "7"})
    row.refresh_from_db()
    assert row.strategy == "entropy"  # refused with a message, nothing changed
    page = client.get(url)
    assert page.context["queues"]["labeling"] == len(POOL_TEXTS)
    assert page.context["stop"].stop is False


@pytest.mark.django_db
def test_page_shows_the_stopping_signal_after_three_stable_rounds(project, client, owner):
    client.force_login(owner)
    url = reverse("modeling:active_learning", args=[project.slug])
    common = {"project": project, "strategy": "margin", "batch_size": 5, "pool_size": 10, "gold_count": 50}
    for agreement in (0.95, 0.995, 0.999):
        ActiveLearningRound.objects.create(agreement=agreement, **common)
    assert b'id="stop-signal"' not in client.get(url).content  # only two rounds reach 0.99
    ActiveLearningRound.objects.create(agreement=1.0, **common)
    page = client.get(url)
    assert b'id="stop-signal"' in page.content and page.context["stop"].agreements[-1] == 1.0


@pytest.mark.django_db
def test_labelled_counts_follow_the_versions_class_order(al_project):
    project, taxonomy = al_project
    version = ModelVersion(
        project=project,
        number=99,
        taxonomy=taxonomy,
        label_keys=["其他", "支付", "物流"],
        training_snapshot=[[1, "物流"], [2, "物流"], [3, "其他"], [4, "退役的标签"]],
    )
    assert active_learning._labelled_counts(version).tolist() == [1.0, 0.0, 2.0]
