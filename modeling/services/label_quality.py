"""Label quality: offline checks on a labelled JSONL file, and the in-app check that fills the review queue.

Both score every labelled text out of fold through the engine's route seam (``quality.out_of_fold``: the label
check's route fitted on the other folds, its ``encode`` on the held-out one, features from the feature cache)
and rank suspected label errors with cleanlab; near-duplicates with different gold labels are conflicts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext

from labeling.models import Item, Project, ReviewTask
from modeling.engine.files import JsonlError, numbered_jsonl
from modeling.engine.selection import quality
from modeling.services.features import (
    build_extractor,
    extract_with_cache,
    feature_config,
    resolve_backbone_spec,
)
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)

MIN_ITEMS_FOR_CHECK = 30


# --- labelled files ---------------------------------------------------------------------------------


@dataclass
class LabelledFile:
    texts: list[str]
    labels: list[str]


def read_labelled_jsonl(path: str | Path) -> LabelledFile:
    """`{"text", "label"}` per line; a broken line stops with its line number (no silent drops)."""
    texts: list[str] = []
    labels: list[str] = []
    path = Path(path)
    if not path.is_file():
        raise ServiceError(gettext("%(path)s: no such file") % {"path": path})
    try:
        for line_no, row in numbered_jsonl(path, required=("text", "label")):
            if not str(row.get("text") or "").strip() or row.get("label") in (None, ""):
                raise ServiceError(
                    gettext("%(path)s:%(line_no)s: needs a non-empty 'text' and a 'label'")
                    % {"path": path, "line_no": line_no}
                )
            texts.append(str(row["text"]))
            labels.append(str(row["label"]))
    except JsonlError as exc:
        raise ServiceError(str(exc)) from exc
    if not texts:
        raise ServiceError(gettext("%(path)s: no labelled lines") % {"path": path})
    return LabelledFile(texts, labels)


def encode_texts(texts: list[str], backbone: str | None, progress: Any = None) -> np.ndarray:
    """Frozen features for texts through the app's extractor and feature cache (repeat runs extract nothing)."""
    spec = resolve_backbone_spec(backbone)
    extractor = build_extractor(spec, feature_config(spec, {}))
    matrix, _ = extract_with_cache(extractor, texts, progress)
    return matrix


def check_context(label_keys: list[str], seed: int = 0) -> Any:
    """Where the label check's route finds its backbone and the feature cache."""
    from modeling.engine.routes.base import FitContext, Taxonomy

    return FitContext(
        label_keys=list(label_keys),
        taxonomy=Taxonomy.from_keys(label_keys, label_keys[-1]),
        model_root=Path(settings.MODEL_ROOT),
        cache_dir=Path(settings.FEATURE_CACHE_DIR),
        seed=seed,
        extras={"default_backbone": settings.DEFAULT_BACKBONE},
        threads=int(settings.TORCH_THREADS),
    )


def check_params(backbone: str | None) -> dict[str, Any]:
    return {**quality.LABEL_CHECK_PARAMS, **({"backbone": backbone} if backbone else {})}


def score_out_of_fold(
    texts: list[str],
    labels: list[str],
    label_keys: list[str],
    *,
    backbone: str | None = None,
    route: str = quality.LABEL_CHECK_ROUTE,
    params: dict[str, Any] | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> Any:
    """``quality.out_of_fold`` of labelled texts; an unusable backbone or too few items is a ServiceError."""
    from modeling.engine.backbones.packs import BackboneError
    from modeling.engine.routes.base import Examples

    try:
        return quality.out_of_fold(
            Examples(list(texts), list(labels)),
            check_context(label_keys, seed),
            route,
            check_params(backbone) if params is None else params,
            n_folds,
        )
    except (BackboneError, ValueError) as exc:
        raise ServiceError(
            gettext("The label check could not run: %(exc)s") % {"exc": exc}, code="label_check_failed"
        ) from exc


def check_labelled_file(
    train: LabelledFile,
    reference: LabelledFile | None = None,
    n_folds: int = 5,
    seed: int = 0,
    backbone: str | None = None,
) -> dict[str, Any]:
    """Rank suspected errors of a labelled file; with a clean reference (same lines), precision@k."""
    classes = sorted(set(train.labels) | (set(reference.labels) if reference else set()))
    index = {key: i for i, key in enumerate(classes)}
    y = np.array([index[key] for key in train.labels])
    scored = score_out_of_fold(train.texts, train.labels, classes, backbone=backbone, n_folds=n_folds, seed=seed)
    probs = scored.probs
    ranked = quality.rank_label_issues(y, probs)
    conflicts = quality.near_duplicate_conflicts(scored.features, y) if scored.features is not None else []
    report: dict[str, Any] = {
        "n": len(y),
        "n_flagged": sum(issue.flagged for issue in ranked),
        "ranked": [
            {
                "line": issue.index + 1,
                "given": classes[issue.given],
                "suggested": classes[issue.suggested],
                "quality": round(issue.quality, 6),
                "flagged": issue.flagged,
            }
            for issue in ranked
        ],
        "conflicts": [{"line_a": c.a + 1, "line_b": c.b + 1, "similarity": round(c.similarity, 4)} for c in conflicts],
    }
    if reference is not None:
        if reference.texts != train.texts:
            raise ServiceError(gettext("--reference must hold the same texts in the same order as --train"))
        wrong = {i for i, (a, b) in enumerate(zip(train.labels, reference.labels, strict=True)) if a != b}
        order = [issue.index for issue in ranked]
        n = len(y)
        report["n_wrong"] = len(wrong)
        report["precision_at_k"] = {
            str(k): round(quality.precision_at_k(order, wrong, k), 4)
            for k in sorted({len(wrong), n // 20, n // 10, report["n_flagged"]})
            if k > 0
        }
        report["precision_top_10pct"] = round(quality.precision_at_k(order, wrong, max(1, n // 10)), 4)
        # The plain rule for comparison: rank only by out-of-fold P(given label), no confident-learning filter.
        plain = sorted(range(n), key=lambda i: probs[i, y[i]])
        report["precision_top_10pct_self_confidence_only"] = round(
            quality.precision_at_k(plain, wrong, max(1, n // 10)), 4
        )
        report["recall_flagged"] = round(
            len(wrong & {issue.index for issue in ranked if issue.flagged}) / max(len(wrong), 1), 4
        )
    return report


# --- in the app --------------------------------------------------------------------------------------


@transaction.atomic
def queue_label_issues(
    project: Project,
    *,
    item_ids: list[int],
    label_keys: list[str],
    given: list[str],
    texts: list[str],
    backbone: str | None = None,
    route: str = quality.LABEL_CHECK_ROUTE,
    params: dict[str, Any] | None = None,
    max_issues: int | None = None,
    model_ref: str = "label-quality",
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, int]:
    """Run the k-fold check on a project's gold labels and put flagged items into the review queue.

    Every text is scored out of fold through the engine (``score_out_of_fold``: `route` with `params`, by
    default route 1's frozen features of `backbone` under a logistic regression).

    Items flagged by confident learning become ReviewTask(kind=label_issue) with the suggested label and
    the out-of-fold top-3; near-duplicate pairs with different gold labels become ReviewTask(kind=conflict).
    Items that already have an open task of the same kind are not queued twice.
    """
    from labeling.services.review import create_review_task

    if len(item_ids) < MIN_ITEMS_FOR_CHECK:
        raise ServiceError(
            gettext("A label check needs at least %(min_items_for_check)s gold labels; there are %(n_item_ids)s.")
            % {"min_items_for_check": MIN_ITEMS_FOR_CHECK, "n_item_ids": len(item_ids)}
        )
    index = {key: i for i, key in enumerate(label_keys)}
    y = np.array([index[key] for key in given])
    scored = score_out_of_fold(
        texts, given, label_keys, backbone=backbone, route=route, params=params, n_folds=n_folds, seed=seed
    )
    probs = scored.probs
    issues = quality.rank_label_issues(y, probs)
    _store_issue_scores(project, item_ids, label_keys, given, issues, model_ref)
    ranked = [issue for issue in issues if issue.flagged]
    if max_issues is not None:
        ranked = ranked[:max_issues]
    items = Item.objects.in_bulk(item_ids)
    open_tasks = set(
        ReviewTask.objects.filter(project=project, status=ReviewTask.Status.OPEN).values_list("item_id", "kind")
    )
    created = {"label_issue": 0, "conflict": 0}
    for issue in ranked:
        item_id = item_ids[issue.index]
        if (item_id, ReviewTask.Kind.LABEL_ISSUE) in open_tasks:
            continue
        top = np.argsort(-probs[issue.index])[:3]
        create_review_task(
            project=project,
            item=items[item_id],
            kind=ReviewTask.Kind.LABEL_ISSUE,
            suggested_label=label_keys[issue.suggested],
            confidence=float(probs[issue.index, issue.suggested]),
            topk=[{"label": label_keys[j], "probability": round(float(probs[issue.index, j]), 4)} for j in top],
            model_version_ref=model_ref,
        )
        created["label_issue"] += 1
    conflicts = quality.near_duplicate_conflicts(scored.features, y) if scored.features is not None else []
    for conflict in conflicts:
        a, b = item_ids[conflict.a], item_ids[conflict.b]
        if (a, ReviewTask.Kind.CONFLICT) in open_tasks:
            continue
        create_review_task(
            project=project,
            item=items[a],
            kind=ReviewTask.Kind.CONFLICT,
            suggested_label=given[conflict.b],
            confidence=conflict.similarity,
            neighbours=[
                {
                    "item_id": b,
                    "text": items[b].text,
                    "label": given[conflict.b],
                    "similarity": round(conflict.similarity, 4),
                }
            ],
            model_version_ref=model_ref,
        )
        open_tasks.add((a, ReviewTask.Kind.CONFLICT))
        created["conflict"] += 1
    logger.info("label check on project %s: %s", project.slug, created)
    return created


def _store_issue_scores(
    project: Project,
    item_ids: list[int],
    label_keys: list[str],
    given: list[str],
    issues: list[quality.LabelIssue],
    model_ref: str,
) -> None:
    """Every checked gold label's score goes to labeling, for the item browser and the item page."""
    from labeling.services.predictions import IssueRow, set_label_issue_scores

    set_label_issue_scores(
        project=project,
        model_ref=model_ref,
        rows=[
            IssueRow(
                item_id=item_ids[issue.index],
                label_key=given[issue.index],
                score=1.0 - issue.quality,
                suggested_label=label_keys[issue.suggested],
                flagged=issue.flagged,
            )
            for issue in issues
        ],
    )


def check_project_labels(project: Project, *, max_issues: int | None = 200) -> dict[str, int]:
    """The label check of a project: its gold labels (latest published taxonomy), scored out of fold on the
    newest model's backbone (or the default one), then `queue_label_issues`."""
    from labeling.selectors.training_data import gold_examples, latest_published_taxonomy, taxonomy_label_keys
    from modeling.selectors.active_learning import scoring_model

    taxonomy = latest_published_taxonomy(project)
    if taxonomy is None:
        raise ServiceError(
            gettext("Publish a taxonomy first: label checks compare gold labels of a published version.")
        )
    keys, _ = taxonomy_label_keys(taxonomy)
    examples = gold_examples(project, label_keys=keys)
    version = scoring_model(project)
    backbone = version.backbone_name if version and version.backbone_name else None
    spec = resolve_backbone_spec(backbone)
    used = sorted({e.label_key for e in examples}, key=keys.index)
    return queue_label_issues(
        project,
        item_ids=[e.item_id for e in examples],
        label_keys=used,
        given=[e.label_key for e in examples],
        texts=[e.text for e in examples],
        backbone=backbone,
        max_issues=max_issues,
        model_ref=f"label-check:{spec.name}"[:64],
    )
