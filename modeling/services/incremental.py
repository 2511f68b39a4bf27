"""Incremental training runs: continue from a previous version on the new gold labels plus a replay sample of
the old ones, and measure forgetting on the previous version's validation split.

A run with ``incremental_from`` (a version number of the project) trains a fine-tuned route (one whose engine
route ``warm_starts``) from that version's route folder on the train-split gold labels new since it (unseen
items, or items whose label changed) plus a label-stratified ``replay_share`` of the old ones. Route 1 and the
other routes without warm starts retrain on all gold labels, as a full run does. Either way the new version's
metrics hold ``incremental`` (what it trained on) and ``forgetting`` (macro-F1 on the previous validation split
before and after).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils.translation import gettext

from labeling.models import Item, Project
from labeling.selectors.training_data import GoldExample
from modeling.models import ModelVersion
from sceneclf_site.api_errors import ServiceError


@dataclass(frozen=True)
class Increment:
    previous: ModelVersion
    train: list[GoldExample]  # what the route fits on
    warm_start: Path | None  # the previous version's route folder, for routes that continue from it
    report: dict[str, Any]

    def log_line(self) -> str:
        r = self.report
        if r["mode"] == "all_gold":
            return f"incremental from v{self.previous.number}: this route retrains on all {len(self.train)} gold labels"
        return (
            f"incremental from v{self.previous.number}: {r['n_new']} new + {r['n_replay']} replayed of {r['n_old']} "
            f"old gold labels (replay share {r['replay_share']:g})"
        )


def previous_version(project: Project, number: int, route: str) -> ModelVersion:
    """The version an incremental run continues from; a clear error when it is missing or of another route."""
    version = ModelVersion.objects.filter(project=project, number=number).first()
    if version is None:
        raise ServiceError(
            gettext("There is no model version v%(number)s to continue from.") % {"number": number},
            code="invalid_params",
            details={"key": "incremental_from"},
        )
    if version.route != route:
        raise ServiceError(
            gettext(
                "v%(number)s was trained with route %(old)s; an incremental run continues the same route, not %(new)s."
            )
            % {"number": number, "old": version.route, "new": route},
            code="invalid_params",
            details={"key": "incremental_from"},
        )
    return version


def plan_increment(
    *, project: Project, route: str, train: list[GoldExample], number: int, replay_share: float, seed: int
) -> Increment:
    """What an incremental run trains on, from the project's current train-split gold labels."""
    from modeling.engine.data.replay import incremental_selection
    from modeling.engine.routes import get_route
    from modeling.engine.versions import ROUTE_DIR

    previous = previous_version(project, number, route)
    if not get_route(route).warm_starts:
        return Increment(previous, list(train), None, {"previous_version": previous.number, "mode": "all_gold"})
    selection = incremental_selection(
        [e.item_id for e in train], [e.label_key for e in train], previous.training_snapshot, replay_share, seed
    )
    if not len(selection.new):
        raise ServiceError(
            gettext("No train gold labels are new since v%(number)s: there is nothing to continue on.")
            % {"number": previous.number},
            code="not_enough_data",
        )
    report = {"previous_version": previous.number, "mode": "warm_start", "seed": seed, **selection.report}
    chosen = [train[i] for i in selection.train]
    return Increment(previous, chosen, Path(previous.artifacts_dir) / ROUTE_DIR, report)


def forgetting_metrics(*, previous: ModelVersion, predictor: Any, load_context: Any) -> dict[str, Any]:
    """Macro-F1 of the previous version and of the new one (``predictor``) on the previous validation split:
    the items of its training snapshot in the val split, with the labels it was validated on."""
    from modeling.engine.evaluation.forgetting import forgetting_report
    from modeling.engine.routes.base import Examples
    from modeling.engine.versions import Predictor

    labels = {int(item_id): label for item_id, label in previous.training_snapshot}
    texts = dict(
        Item.objects.filter(project_id=previous.project_id, pk__in=labels, split="val").values_list("pk", "text")
    )
    ids = sorted(texts)
    before = Predictor.load(Path(previous.artifacts_dir), load_context, expected_manifest=previous.manifest or None)
    report = forgetting_report(before, predictor, Examples([texts[i] for i in ids], [labels[i] for i in ids]))
    return {"previous_version": previous.number, **report}
