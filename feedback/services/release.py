"""The release rule at work: compare the challenger with the champion on the same window of logged traffic
and promote it (its share moves to the next step; past the last step it becomes the champion) or roll it back,
saying why in the version's history. Runs from beat and after feedback arrives (feedback.tasks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from feedback.selectors.release import Comparison, compare_challenger
from labeling.models import Project
from modeling.models import Alias, ModelVersion, ReleaseRule, VersionEvent
from modeling.selectors.aliases import alias_map, share_steps
from modeling.services import aliases as alias_services

logger = logging.getLogger(__name__)
RULE = "release_rule"


@dataclass(frozen=True)
class Verdict:
    action: str  # wait | step | promote | rollback
    reason: str
    next_share: float | None = None


def evaluate_release(*, project: Project, now: datetime | None = None) -> Verdict | None:
    """Applies the rule once; None when there is no challenger or the owner switched automatic decisions off."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # one decision at a time per project
        rule = alias_services.release_rule_for(project)
        held = alias_map(project)
        challenger = held[Alias.CHALLENGER]
        if challenger is None or not rule.auto_decide:
            return None
        comparison = compare_challenger(project, held[Alias.CHAMPION], challenger, now=now)
        verdict = judge(comparison, rule)
        _apply(project, challenger, verdict, comparison)
    return verdict


def judge(comparison: Comparison, rule: ReleaseRule) -> Verdict:
    mine, theirs = comparison.challenger, comparison.champion
    need = rule.min_labelled
    if mine["labelled"] < need or (theirs["version"] is not None and theirs["labelled"] < need):
        return Verdict(
            "wait",
            gettext(
                "Waiting for %(need)s labelled predictions of each version (challenger %(mine)s, champion %(theirs)s)."
            )
            % {"need": need, "mine": mine["labelled"], "theirs": theirs["labelled"]},
        )
    worse = _worse_because(mine, theirs, rule) if theirs["version"] is not None else None
    if worse:
        return Verdict("rollback", worse)
    better = _summary(mine, theirs)
    current = next((s for s in share_steps(rule) if s > rule.challenger_share + 1e-9), None)
    if current is not None and current < 1.0:
        return Verdict("step", better, next_share=current)
    return Verdict("promote", better)


def _worse_because(mine: dict[str, Any], theirs: dict[str, Any], rule: ReleaseRule) -> str | None:
    drop = theirs["macro_f1"] - mine["macro_f1"]
    if drop > rule.max_f1_drop + 1e-9:
        return gettext(
            "Macro-F1 %(mine).3f is %(drop).3f below the champion's %(theirs).3f on the same window "
            "(%(n_mine)s and %(n_theirs)s labelled); the allowed drop is %(limit).3f."
        ) % {
            "mine": mine["macro_f1"],
            "drop": drop,
            "theirs": theirs["macro_f1"],
            "n_mine": mine["labelled"],
            "n_theirs": theirs["labelled"],
            "limit": rule.max_f1_drop,
        }
    rise = mine["abstain_rate"] - theirs["abstain_rate"]
    if rise > rule.max_abstain_increase + 1e-9:
        return gettext(
            "Abstain rate %(mine).1f%% is %(rise).1f points above the champion's %(theirs).1f%%; at most "
            "%(limit).1f points are allowed."
        ) % {
            "mine": 100 * mine["abstain_rate"],
            "rise": 100 * rise,
            "theirs": 100 * theirs["abstain_rate"],
            "limit": 100 * rule.max_abstain_increase,
        }
    if theirs["latency_p99_ms"] > 0 and mine["latency_p99_ms"] > rule.max_latency_ratio * theirs["latency_p99_ms"]:
        return gettext("Latency p99 %(mine).1f ms is more than %(ratio).2f times the champion's %(theirs).1f ms.") % {
            "mine": mine["latency_p99_ms"],
            "ratio": rule.max_latency_ratio,
            "theirs": theirs["latency_p99_ms"],
        }
    return None


def _summary(mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    if theirs["version"] is None:
        return gettext("No champion to compare with; macro-F1 %(mine).3f on %(n)s labelled predictions.") % {
            "mine": mine["macro_f1"],
            "n": mine["labelled"],
        }
    return gettext(
        "Macro-F1 %(mine).3f vs %(theirs).3f, abstain rate %(abstain_mine).1f%% vs %(abstain_theirs).1f%%, "
        "latency p99 %(p99_mine).1f vs %(p99_theirs).1f ms on the same window."
    ) % {
        "mine": mine["macro_f1"],
        "theirs": theirs["macro_f1"],
        "abstain_mine": 100 * mine["abstain_rate"],
        "abstain_theirs": 100 * theirs["abstain_rate"],
        "p99_mine": mine["latency_p99_ms"],
        "p99_theirs": theirs["latency_p99_ms"],
    }


def _apply(project: Project, challenger: ModelVersion, verdict: Verdict, comparison: Comparison) -> None:
    figures = comparison.as_dict()
    if verdict.action == "rollback":
        alias_services.remove_alias(
            project=project,
            alias=Alias.CHALLENGER,
            kind=VersionEvent.Kind.ROLLED_BACK,
            rule=RULE,
            reason=verdict.reason,
            figures=figures,
        )
    elif verdict.action == "step":
        alias_services.set_challenger_share(
            project=project, share=verdict.next_share, rule=RULE, reason=verdict.reason, figures=figures
        )
    elif verdict.action == "promote":
        alias_services.promote_challenger(project=project, rule=RULE, reason=verdict.reason, figures=figures)


def evaluate_all_releases() -> dict[str, str]:
    """Beat: every project with a challenger."""
    decided = {}
    for project in Project.objects.filter(model_versions__alias=Alias.CHALLENGER).distinct():
        try:
            verdict = evaluate_release(project=project)
        except Exception:  # one project's failure must not stop the others; the next beat tries again
            logger.exception("release rule of project %s failed", project.slug)
            continue
        if verdict is not None:
            decided[project.slug] = verdict.action
    return decided


def queue_release_check(project: Project) -> None:
    """After feedback: evaluate once the stored feedback is committed (only where a challenger exists)."""
    if not ModelVersion.objects.filter(project=project, alias=Alias.CHALLENGER).exists():
        return

    def send() -> None:
        from feedback.tasks import evaluate_release_rule
        from sceneclf_site.queueing import send_task_quietly

        send_task_quietly(evaluate_release_rule, args=[project.pk])

    transaction.on_commit(send)
