"""Reads of the item browser: one query string → a filtered, sorted, annotated queryset of items.

Everything is computed in the database (joins and subqueries), so sorting 20k items by margin or disagreement
is one indexed query; the page then shows 50 of them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, time
from typing import Any

from django.db.models import (
    Case,
    Count,
    F,
    FilteredRelation,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import (
    Annotation,
    GoldLabel,
    Item,
    ItemPrediction,
    LabelIssueScore,
    Project,
    ReviewTask,
    SavedView,
)
from sceneclf_site.api_errors import ServiceError

SPLIT_VALUES = {"train": "train", "val": "val", "test": "test", "unassigned": ""}
# sort key → the annotation it orders by; a leading "-" sorts descending.
SORT_FIELDS = {
    "id": "id",
    "created": "created_at",
    "confidence": "pred_confidence",
    "margin": "pred_margin",
    "disagreement": "disagreement",
    "issue": "issue_score",
}
NULLABLE_SORTS = {"confidence", "margin", "issue"}
NUMBER_FILTERS = ("conf_min", "conf_max", "margin_max", "issue_min")
TEXT_FILTERS = ("q", "label", "split", "source", "gold", "model", "pred", "sort")


@dataclass(frozen=True)
class BrowserQuery:
    q: str = ""
    label: str = ""  # gold label key
    split: str = ""  # train | val | test | unassigned
    source: str = ""
    gold: str = ""  # yes | no
    model: str = ""  # the model ref whose predictions give confidence, margin and `pred`
    pred: str = ""  # that model's predicted label
    conf_min: float | None = None
    conf_max: float | None = None
    margin_max: float | None = None
    disagree: int | None = None  # at least this many labels beyond the first among the annotations
    issue_min: float | None = None
    date_from: date | None = None
    date_to: date | None = None
    sort: str = "id"

    def as_params(self) -> dict[str, str]:
        """The non-default values as query-string parameters (saved views, links, pagination)."""
        out: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value in (None, "") or (spec.name == "sort" and value == "id"):
                continue
            out[spec.name] = value.isoformat() if isinstance(value, date) else str(value)
        return out


def parse_browser_query(data: Any) -> BrowserQuery:
    """A BrowserQuery from request.GET (or any mapping); a value that cannot be read is a ServiceError."""
    values: dict[str, Any] = {name: str(data.get(name, "") or "").strip() for name in TEXT_FILTERS}
    if values["split"] and values["split"] not in SPLIT_VALUES:
        raise ServiceError(gettext("Unknown split '%(value)s'.") % {"value": values["split"]}, code="bad_filter")
    if values["gold"] not in ("", "yes", "no"):
        raise ServiceError(gettext("'Has gold' is yes, no or empty."), code="bad_filter")
    if values["sort"].lstrip("-") not in SORT_FIELDS:
        values["sort"] = "id"
    for name in NUMBER_FILTERS:
        values[name] = _number(data.get(name), name)
    disagree = _number(data.get("disagree"), "disagree")
    values["disagree"] = None if disagree is None else int(disagree)
    values["date_from"] = _date(data.get("date_from"), "date_from")
    values["date_to"] = _date(data.get("date_to"), "date_to")
    return BrowserQuery(**values)


def _number(raw: Any, name: str) -> float | None:
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ServiceError(
            gettext("'%(name)s' must be a number, not '%(value)s'.") % {"name": name, "value": text},
            code="bad_filter",
        ) from exc


def _date(raw: Any, name: str) -> date | None:
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ServiceError(
            gettext("'%(name)s' must be a date (YYYY-MM-DD), not '%(value)s'.") % {"name": name, "value": text},
            code="bad_filter",
        ) from exc


def model_refs(project: Project) -> list[str]:
    """Model refs that have predictions on this project's items, newest first."""
    refs = set(ItemPrediction.objects.filter(project=project).values_list("model_ref", flat=True).distinct())
    return sorted(refs, key=_ref_number, reverse=True)


def _ref_number(ref: str) -> tuple[int, str]:
    head, _, number = ref.rpartition("@v")
    return (int(number), head) if number.isdigit() else (-1, ref)


def browse_items(project: Project, query: BrowserQuery) -> QuerySet[Item]:
    """Items of the project, annotated with gold label, the model's prediction, disagreement and label-issue
    score, filtered and sorted as the query says."""
    items = _annotated(project, query.model)
    items = _filtered(items, query)
    key = query.sort.lstrip("-")
    descending = query.sort.startswith("-")
    if key in NULLABLE_SORTS:  # items the model never scored (or the check never saw) go last either way
        field = SORT_FIELDS[key]
        return items.order_by(F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True), "id")
    # Plain columns: an index on (project, column) can hand over the first page without sorting every item.
    return items.order_by(query.sort.replace(key, SORT_FIELDS[key]), "-id" if descending else "id")


def _annotated(project: Project, model_ref: str) -> QuerySet[Item]:
    distinct_labels = (
        Annotation.objects.filter(item=OuterRef("pk"))
        .values("item")
        .annotate(n=Count("label_key", distinct=True))
        .values("n")
    )
    n_annotations = Annotation.objects.filter(item=OuterRef("pk")).values("item").annotate(n=Count("id")).values("n")
    items = (
        Item.objects.filter(project=project)
        .select_related("gold")
        .annotate(
            pred=FilteredRelation("predictions", condition=Q(predictions__model_ref=model_ref)),
            n_annotations=Coalesce(Subquery(n_annotations, output_field=IntegerField()), 0),
            disagreement=Greatest(
                Coalesce(Subquery(distinct_labels, output_field=IntegerField()), 0) - Value(1), Value(0)
            ),
            issue_score=Case(
                When(label_issue__label_key=F("gold__label_key"), then=F("label_issue__score")),
                default=None,
                output_field=FloatField(),
            ),
        )
        .annotate(
            pred_label=F("pred__label_key"),
            pred_confidence=F("pred__confidence"),
            pred_margin=F("pred__margin"),
            pred_abstained=F("pred__abstained"),
        )
    )
    return items


def _filtered(items: QuerySet[Item], query: BrowserQuery) -> QuerySet[Item]:
    conditions = {
        "text__icontains": query.q or None,
        "gold__label_key": query.label or None,
        "source": query.source or None,
        "pred_label": query.pred or None,
        "pred_confidence__gte": query.conf_min,
        "pred_confidence__lte": query.conf_max,
        "pred_margin__lte": query.margin_max,
        "disagreement__gte": query.disagree,
        "issue_score__gte": query.issue_min,
        "created_at__gte": _day_start(query.date_from),
        "created_at__lt": _day_start(query.date_to, next_day=True),
    }
    items = items.filter(**{key: value for key, value in conditions.items() if value is not None})
    if query.split:
        items = items.filter(split=SPLIT_VALUES[query.split])
    if query.gold:
        items = items.filter(gold__isnull=query.gold == "no")
    return items


def _day_start(day: date | None, *, next_day: bool = False) -> datetime | None:
    if day is None:
        return None
    if next_day:
        day = date.fromordinal(day.toordinal() + 1)
    return timezone.make_aware(datetime.combine(day, time.min))


def browser_choices(project: Project) -> dict[str, list[str]]:
    """The values the filter dropdowns offer: gold labels and sources in use, model refs with predictions."""
    labels = GoldLabel.objects.filter(item__project=project).order_by("label_key").values_list("label_key", flat=True)
    sources = (
        Item.objects.filter(project=project).exclude(source="").order_by("source").values_list("source", flat=True)
    )
    return {"labels": list(labels.distinct()), "sources": list(sources.distinct()), "models": model_refs(project)}


def browser_counts(project: Project) -> dict[str, int]:
    """Items, gold labels and items per split, in one query."""
    counts = Item.objects.filter(project=project).aggregate(
        total=Count("id"),
        gold=Count("gold"),
        train=Count("id", filter=Q(split="train")),
        val=Count("id", filter=Q(split="val")),
        test=Count("id", filter=Q(split="test")),
        unassigned=Count("id", filter=Q(split="")),
    )
    return {key: int(value or 0) for key, value in counts.items()}


def page_rows(project: Project, query: BrowserQuery, item_ids: list[int]) -> list[Item]:
    """The full rows of one page, in the page's order. The page's ids come from a narrow query (ids and sort keys
    only), so sorting 20k items never carries their texts along."""
    rows = {item.pk: item for item in _annotated(project, query.model).filter(pk__in=item_ids)}
    return [rows[item_id] for item_id in item_ids if item_id in rows]


def items_in_project(project: Project, item_ids: list[int]) -> QuerySet[Item]:
    return Item.objects.filter(project=project, pk__in=item_ids).select_related("gold")


def saved_views(project: Project, user: Any) -> QuerySet[SavedView]:
    return SavedView.objects.filter(project=project, user=user).order_by("name")


def item_predictions(item: Item) -> list[ItemPrediction]:
    return sorted(ItemPrediction.objects.filter(item=item), key=lambda row: _ref_number(row.model_ref), reverse=True)


def item_label_issue(item: Item) -> LabelIssueScore | None:
    return LabelIssueScore.objects.filter(item=item).first()


def item_review_tasks(item: Item) -> list[ReviewTask]:
    return list(ReviewTask.objects.filter(item=item).select_related("resolved_by").order_by("created_at", "id"))
