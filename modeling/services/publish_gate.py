"""The quality gate of automatic publishing.

A candidate replaces the published version automatically only if, scored side by side on the candidate's
own validation items, its macro-F1 is not lower than the current version's by more than the owner's margin,
and its abstain rate stays within the owner's band around the current one. Both versions are re-scored here
(their Predictors answer the same texts), so the comparison never mixes validation sets. A candidate that
fails stays a candidate; the decision and its reason are stored on the version."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import Project
from modeling.models import ModelVersion, PublishGate
from modeling.selectors.aliases import champion_version
from sceneclf_site.api_errors import ServiceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateScore:
    macro_f1: float
    abstain_rate: float


def gate_for(project: Project) -> PublishGate:
    gate, _ = PublishGate.objects.get_or_create(project=project)
    return gate


def update_publish_gate(*, project: Project, max_f1_drop: float, abstain_band: float) -> PublishGate:
    for name, value in (("max_f1_drop", max_f1_drop), ("abstain_band", abstain_band)):
        if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise ServiceError(
                gettext("%(name)s must be a number between 0 and 1.") % {"name": name}, code="invalid_gate"
            )
    gate = gate_for(project)
    gate.max_f1_drop = float(max_f1_drop)
    gate.abstain_band = float(abstain_band)
    gate.save(update_fields=["max_f1_drop", "abstain_band", "updated_at"])
    return gate


def score_version(version: ModelVersion, texts: list[str], label_keys: list[str]) -> GateScore:
    """Macro-F1 (of the top label, over the labels present in `label_keys`) and abstain rate of `version`."""
    from sklearn.metrics import f1_score

    from modeling.services.serving import load_predictor

    predictions = load_predictor(version, cached=True).predict(texts, k=1)
    predicted = [p.topk[0][0] for p in predictions]
    macro_f1 = f1_score(label_keys, predicted, labels=sorted(set(label_keys)), average="macro", zero_division=0)
    abstain_rate = sum(p.abstained for p in predictions) / max(1, len(predictions))
    return GateScore(round(float(macro_f1), 4), round(float(abstain_rate), 4))


def decide(*, candidate: ModelVersion, texts: list[str], label_keys: list[str]) -> dict[str, Any]:
    """The gate's decision for `candidate` on its validation texts and gold labels (not stored here)."""
    gate = gate_for(candidate.project)
    record: dict[str, Any] = {
        "val_set": (candidate.metrics or {}).get("val_set"),
        "max_f1_drop": gate.max_f1_drop,
        "abstain_band": gate.abstain_band,
        "decided_at": timezone.now().isoformat(),
    }
    current = champion_version(candidate.project)
    if current is not None and current.pk == candidate.pk:
        current = None
    mine = score_version(candidate, texts, label_keys)
    record["candidate"] = asdict(mine)
    if current is None:
        return {**record, "passed": True, "reason": "No version was published yet."}
    try:
        theirs = score_version(current, texts, label_keys)
    except Exception as exc:  # its files or backbone are gone: nothing to compare against safely
        reason = f"The published v{current.number} could not be scored on these validation items ({exc})."
        return {**record, "passed": False, "current": {"version": current.number}, "reason": reason}
    record["current"] = {"version": current.number, **asdict(theirs)}
    return {**record, **_verdict(mine, theirs, current.number, gate, len(texts))}


def _verdict(mine: GateScore, theirs: GateScore, number: int, gate: PublishGate, n: int) -> dict[str, Any]:
    drop = theirs.macro_f1 - mine.macro_f1
    if drop > gate.max_f1_drop + 1e-9:
        return {
            "passed": False,
            "reason": (
                f"Macro-F1 {mine.macro_f1:.3f} is {drop:.3f} below the published v{number} ({theirs.macro_f1:.3f}) "
                f"on the same {n} validation items; the allowed drop is {gate.max_f1_drop:.3f}."
            ),
        }
    shift = mine.abstain_rate - theirs.abstain_rate
    if abs(shift) > gate.abstain_band + 1e-9:
        return {
            "passed": False,
            "reason": (
                f"Abstain rate {mine.abstain_rate:.1%} is outside the band of ±{gate.abstain_band:.1%} around "
                f"the published v{number} ({theirs.abstain_rate:.1%}) on the same {n} validation items."
            ),
        }
    return {
        "passed": True,
        "reason": (
            f"Macro-F1 {mine.macro_f1:.3f} vs {theirs.macro_f1:.3f} and abstain rate {mine.abstain_rate:.1%} vs "
            f"{theirs.abstain_rate:.1%} of the published v{number} on the same {n} validation items."
        ),
    }


def auto_publish(*, candidate: ModelVersion, texts: list[str], label_keys: list[str]) -> bool:
    """Publishes `candidate` if the gate passes; stores the decision either way. Returns whether it did."""
    from modeling.services.versions import publish_model_version

    try:
        decision = decide(candidate=candidate, texts=texts, label_keys=label_keys)
    except Exception as exc:  # the version exists and is sound; only the comparison failed, so it stays a candidate
        logger.exception("publishing gate of %s failed", candidate.ref)
        decision = {"passed": False, "reason": f"The gate could not score the versions ({type(exc).__name__}: {exc})."}
    with transaction.atomic():
        published = (
            ModelVersion.objects.select_for_update()
            .filter(project_id=candidate.project_id, status=ModelVersion.Status.PUBLISHED)
            .values_list("number", flat=True)
            .first()
        )
        compared = (decision.get("current") or {}).get("version")
        if decision["passed"] and published != compared:
            # Someone published another version while the gate was scoring: it was never compared with it.
            decision = {**decision, "passed": False, "reason": f"v{published} was published during the comparison."}
        ModelVersion.objects.filter(pk=candidate.pk).update(gate=decision)
        candidate.gate = decision
        if decision["passed"]:
            publish_model_version(version=candidate)
    return bool(decision["passed"])
