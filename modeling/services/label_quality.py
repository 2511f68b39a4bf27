"""Label quality: offline checks on a labelled JSONL file, and the in-app check that fills the review queue.

Both run the engine's out-of-fold probe on cached features (modeling.engine.selection.quality) and rank suspected
label errors with cleanlab; near-duplicates with different gold labels are reported as conflicts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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


def check_labelled_file(
    train: LabelledFile,
    features: np.ndarray,
    reference: LabelledFile | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Rank suspected errors of a labelled file; with a clean reference (same lines), precision@k."""
    classes = sorted(set(train.labels) | (set(reference.labels) if reference else set()))
    index = {key: i for i, key in enumerate(classes)}
    y = np.array([index[key] for key in train.labels])
    probs = quality.out_of_fold_probs(features, y, len(classes), n_folds=n_folds, seed=seed)
    ranked = quality.rank_label_issues(y, probs)
    conflicts = quality.near_duplicate_conflicts(features, y)
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
    features: np.ndarray,
    max_issues: int | None = None,
    model_ref: str = "label-quality",
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, int]:
    """Run the k-fold check on a project's gold labels and put flagged items into the review queue.

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
    probs = quality.out_of_fold_probs(features, y, len(label_keys), n_folds=n_folds, seed=seed)
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
    for conflict in quality.near_duplicate_conflicts(features, y):
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
    """The label check of a project: its gold labels (latest published taxonomy), features of the newest model's
    backbone (or the default one) from the cache, then `queue_label_issues`."""
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
    spec = resolve_backbone_spec(version.backbone_name if version and version.backbone_name else None)
    extractor = build_extractor(spec, feature_config(spec, {}))
    features, _ = extract_with_cache(extractor, [e.text for e in examples])
    used = sorted({e.label_key for e in examples}, key=keys.index)
    return queue_label_issues(
        project,
        item_ids=[e.item_id for e in examples],
        label_keys=used,
        given=[e.label_key for e in examples],
        features=features,
        max_issues=max_issues,
        model_ref=f"label-check:{spec.name}"[:64],
    )
