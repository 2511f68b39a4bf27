"""Incremental training runs: a fine-tuned route continues from a previous version on the new gold labels plus a
replay sample of the old ones; route 1 retrains on all gold; both record forgetting on the old validation split."""

from __future__ import annotations

from collections import Counter

import pytest

from labeling.models import Item
from modeling.models import TrainingRun
from modeling.services import training
from modeling.services.active_learning import _last_route_and_params
from sceneclf_site.api_errors import ServiceError
from tests.modeling.route1 import add_gold_items, publish_scene_taxonomy, scene_texts, start_and_run, tiny_params

NEW_LABEL = "售后"


def _encoder_ft(backbone) -> dict:
    return {"backbone": str(backbone), "precision": "fp32", "max_epochs": 1, "batch_size": 16}


@pytest.fixture
def two_batches(project):
    """v1's gold (every scene but 售后), then a second batch: 售后 appears, and more of the old scenes."""
    taxonomy = publish_scene_taxonomy(project)
    first = [row for row in scene_texts(25) if row[1] != NEW_LABEL]
    add_gold_items(project, first, taxonomy)
    second = [row for row in scene_texts(30) if row not in first and (row[1] == NEW_LABEL or row[1] != "其他")]
    return project, taxonomy, second


def _train_items(project, ids=None) -> list[Item]:
    items = Item.objects.filter(project=project, split="train")
    return list(items if ids is None else items.filter(pk__in=ids))


@pytest.mark.django_db
def test_an_incremental_encoder_ft_run_trains_on_new_plus_replay_and_records_forgetting(
    two_batches, tiny_backbone, client, owner
):
    project, taxonomy, second = two_batches
    first_run = start_and_run(project, route="encoder_ft", params=_encoder_ft(tiny_backbone))
    assert first_run.status == TrainingRun.Status.SUCCEEDED, first_run.error
    v1 = first_run.model_version
    old_train = {item.pk: item.gold.label_key for item in _train_items(project)}
    old_val = Item.objects.filter(project=project, split="val").count()
    new_items = add_gold_items(project, second, taxonomy)
    new_train = [item for item in new_items if item.split == "train"]

    run = start_and_run(
        project,
        route="encoder_ft",
        params={**_encoder_ft(tiny_backbone), "incremental_from": v1.number, "replay_share": 0.25},
    )

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = run.model_version
    report = version.metrics["incremental"]
    assert report["mode"] == "warm_start" and report["previous_version"] == v1.number
    assert report["n_new"] == len(new_train) and report["n_old"] == len(old_train)
    expected_replay = {label: max(1, round(0.25 * n)) for label, n in Counter(old_train.values()).items()}
    assert report["replay_per_label"] == expected_replay
    assert version.metrics["n_train"] == len(new_train) + sum(expected_replay.values())
    assert f"{report['n_new']} new + {report['n_replay']} replayed" in run.log
    warm = version.metrics["warm_start"]
    assert warm["used"] and warm["new_labels"] == [NEW_LABEL] and warm["source"].startswith(v1.artifacts_dir)
    assert NEW_LABEL in version.label_keys and NEW_LABEL not in v1.label_keys
    forgetting = version.metrics["forgetting"]
    assert forgetting["previous_version"] == v1.number and forgetting["n"] == old_val
    assert forgetting["delta"] == pytest.approx(
        forgetting["old_val_macro_f1_after"] - forgetting["old_val_macro_f1_before"]
    )
    # The next increment counts "new" against all gold this version was accountable for.
    assert len(version.training_snapshot) == Item.objects.filter(project=project, split__in=["train", "val"]).count()

    client.force_login(owner)
    html = client.get(f"/projects/alpha/models/v{version.number}/").content.decode()
    assert 'id="forgetting"' in html and f"validation split of v{v1.number} ({old_val} items)" in html
    assert f"{report['n_new']} new gold labels and {report['n_replay']} replayed" in html


@pytest.mark.django_db
def test_route_1_retrains_on_all_gold_and_still_measures_forgetting(two_batches, tiny_backbone):
    project, taxonomy, second = two_batches
    v1 = start_and_run(project, params=tiny_params(tiny_backbone)).model_version
    add_gold_items(project, second, taxonomy)

    run = start_and_run(project, params={**tiny_params(tiny_backbone), "incremental_from": v1.number})

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = run.model_version
    assert version.metrics["incremental"] == {"previous_version": v1.number, "mode": "all_gold"}
    assert version.metrics["n_train"] == len(_train_items(project))
    assert set(version.metrics["forgetting"]) >= {"old_val_macro_f1_before", "old_val_macro_f1_after", "delta", "n"}
    # The automatic retrain that follows continues from this version, not again from v1.
    route, params = _last_route_and_params(project)
    assert route == "probe" and params["incremental_from"] == version.number


@pytest.mark.django_db
def test_an_increment_with_no_new_gold_fails_with_a_clear_error(two_batches, tiny_backbone):
    project, _, _ = two_batches
    v1 = start_and_run(project, route="encoder_ft", params=_encoder_ft(tiny_backbone)).model_version
    run = start_and_run(
        project, route="encoder_ft", params={**_encoder_ft(tiny_backbone), "incremental_from": v1.number}
    )
    assert run.status == TrainingRun.Status.FAILED and "nothing to continue on" in run.error


@pytest.mark.django_db
def test_incremental_params_are_checked_at_start(two_batches, tiny_backbone):
    project, _, _ = two_batches
    v1 = start_and_run(project, params=tiny_params(tiny_backbone)).model_version
    params = tiny_params(tiny_backbone)
    with pytest.raises(ServiceError, match="no model version v9"):
        training.start_training_run(project=project, params={**params, "incremental_from": 9})
    with pytest.raises(ServiceError, match="continues the same route"):
        training.start_training_run(
            project=project, route="encoder_ft", params={**_encoder_ft(tiny_backbone), "incremental_from": v1.number}
        )
    with pytest.raises(ServiceError, match="replay_share") as error:
        training.start_training_run(project=project, params={**params, "replay_share": 0.2})
    assert error.value.details == {"key": "replay_share"}
    with pytest.raises(ServiceError, match="between 0 and 1"):
        training.start_training_run(project=project, params={**params, "incremental_from": 1, "replay_share": 2})
