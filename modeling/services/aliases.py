"""Registry aliases: champion (serves), challenger (serves a share of the traffic) and shadow (scores every
request, never answers). Each alias points to at most one version of a project (DB constraints), each move
is one transaction that locks the project's versions, only a version whose files verify can take one, and
every move is written to the versions' history (VersionEvent)."""

from __future__ import annotations

import math
import secrets
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from labeling.models import Project
from modeling.models import Alias, ModelVersion, ReleaseRule, VersionEvent
from modeling.selectors import aliases as alias_selectors
from modeling.services.versions import publish_model_version, record_version_event, verify_version_files
from sceneclf_site.api_errors import ConflictError, ServiceError

RULE_FIELDS = ("auto_decide", "min_labelled", "max_f1_drop", "max_abstain_increase", "max_latency_ratio")


def release_rule_for(project: Project) -> ReleaseRule:
    rule, _ = ReleaseRule.objects.get_or_create(
        project=project,
        defaults={"salt": secrets.token_hex(8), "share_steps": list(alias_selectors.DEFAULT_SHARE_STEPS)},
    )
    return rule


def check_alias_name(alias: Any) -> str:
    if alias not in Alias.values:
        raise ServiceError(
            gettext("Unknown alias %(alias)s; use one of %(aliases)s.")
            % {"alias": alias, "aliases": ", ".join(Alias.values)},
            code="invalid_alias",
        )
    return str(alias)


def check_share(share: Any) -> float:
    if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
        raise ServiceError(gettext("The challenger share must be a number from 0 to 1."), code="invalid_share")
    if not 0.0 < float(share) <= 1.0:
        raise ServiceError(
            gettext("The challenger share must be above 0 and at most 1 (remove the challenger to stop it)."),
            code="invalid_share",
        )
    return float(share)


def set_alias(
    *,
    version: ModelVersion,
    alias: str,
    user: Any | None = None,
    share: float | None = None,
    rule: str = "",
    reason: str = "",
    figures: dict[str, Any] | None = None,
) -> ModelVersion:
    """Points `alias` at `version`; the version that held it loses it. A challenger starts at `share` (by
    default the first of the rule's share steps)."""
    alias = check_alias_name(alias)
    if alias == Alias.CHAMPION:
        return publish_model_version(version=version, user=user, rule=rule, reason=reason, figures=figures)
    start = check_share(share) if share is not None else None
    verify_version_files(version)
    with transaction.atomic():
        locked = {v.pk: v for v in ModelVersion.objects.select_for_update().filter(project_id=version.project_id)}
        target = locked[version.pk]
        if target.status == ModelVersion.Status.PUBLISHED:
            raise ConflictError(
                gettext("v%(number)s is the champion; it cannot also be the %(alias)s.")
                % {"number": target.number, "alias": alias}
            )
        if target.alias == alias:
            return target
        if target.alias:
            _drop(target, user=user, rule=rule, reason=gettext("It became the %(alias)s.") % {"alias": alias})
        holder = next((v for v in locked.values() if v.alias == alias), None)
        if holder is not None:
            _drop(
                holder, user=user, rule=rule, reason=gettext("v%(number)s took the alias.") % {"number": target.number}
            )
        target.alias = alias
        if target.status == ModelVersion.Status.ARCHIVED:
            target.status = ModelVersion.Status.CANDIDATE
        target.save(update_fields=["alias", "status"])
        given = None
        if alias == Alias.CHALLENGER:
            given = _set_share(version.project, start)
        record_version_event(
            version=target,
            kind=VersionEvent.Kind.ALIAS_SET,
            alias=alias,
            share=given,
            user=user,
            rule=rule,
            reason=reason,
            figures=figures,
        )
    return target


def remove_alias(
    *,
    project: Project,
    alias: str,
    user: Any | None = None,
    kind: str = VersionEvent.Kind.ALIAS_REMOVED,
    rule: str = "",
    reason: str = "",
    figures: dict[str, Any] | None = None,
) -> ModelVersion:
    """Takes the challenger or the shadow alias away (the champion is replaced or rolled back instead)."""
    alias = check_alias_name(alias)
    if alias == Alias.CHAMPION:
        raise ConflictError(
            gettext("The champion cannot be removed: make another version champion or roll the champion back.")
        )
    with transaction.atomic():
        holder = ModelVersion.objects.select_for_update().filter(project=project, alias=alias).first()
        if holder is None:
            raise ConflictError(gettext("No version is the %(alias)s.") % {"alias": alias})
        _drop(holder, user=user, rule=rule, reason=reason, kind=kind, figures=figures)
    return holder


def set_challenger_share(
    *,
    project: Project,
    share: float,
    user: Any | None = None,
    rule: str = "",
    reason: str = "",
    figures: dict[str, Any] | None = None,
) -> ReleaseRule:
    share = check_share(share)
    with transaction.atomic():
        challenger = ModelVersion.objects.select_for_update().filter(project=project, alias=Alias.CHALLENGER).first()
        if challenger is None:
            raise ConflictError(gettext("No version is the challenger: set one before giving it a share."))
        _set_share(project, share)
        record_version_event(
            version=challenger,
            kind=VersionEvent.Kind.SHARE_CHANGED,
            alias=Alias.CHALLENGER,
            share=share,
            user=user,
            rule=rule,
            reason=reason,
            figures=figures,
        )
    return release_rule_for(project)


def promote_challenger(
    *,
    project: Project,
    user: Any | None = None,
    rule: str = "",
    reason: str = "",
    figures: dict[str, Any] | None = None,
) -> ModelVersion:
    challenger = alias_selectors.alias_version(project, Alias.CHALLENGER)
    if challenger is None:
        raise ConflictError(gettext("No version is the challenger."))
    return publish_model_version(
        version=challenger, user=user, kind=VersionEvent.Kind.PROMOTED, rule=rule, reason=reason, figures=figures
    )


def reset_challenger_share(*, project_id: int) -> None:
    ReleaseRule.objects.filter(project_id=project_id).update(challenger_share=0.0)


def update_release_rule(*, project: Project, **values: Any) -> ReleaseRule:
    """Changes the owner's rule; each value is checked and a wrong one named."""
    rule = release_rule_for(project)
    unknown = sorted(set(values) - set(RULE_FIELDS) - {"share_steps", "retrain_alias"})
    if unknown:
        raise ServiceError(
            gettext("Unknown rule field(s): %(fields)s.") % {"fields": ", ".join(unknown)}, code="invalid_rule"
        )
    for name, value in values.items():
        setattr(rule, name, _checked_rule_value(name, value))
    rule.save()
    return rule


def _checked_rule_value(name: str, value: Any) -> Any:
    if name == "auto_decide":
        if not isinstance(value, bool):
            raise _rule_error(gettext("%(name)s must be true or false.") % {"name": name})
        return value
    if name == "retrain_alias":
        if value not in (Alias.CHALLENGER, Alias.SHADOW):
            raise _rule_error(gettext("retrain_alias must be challenger or shadow."))
        return str(value)
    if name == "share_steps":
        if not isinstance(value, list) or not value or not all(_is_share(step) for step in value):
            raise _rule_error(gettext("share_steps must be a list of shares above 0 and at most 1."))
        return sorted({float(step) for step in value})
    if name == "min_labelled":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise _rule_error(gettext("min_labelled must be a whole number from 1 to 100000."))
        return value
    upper = 100.0 if name == "max_latency_ratio" else 1.0
    lower = 1.0 if name == "max_latency_ratio" else 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not lower <= float(value) <= upper:
        raise _rule_error(
            gettext("%(name)s must be a number from %(lower)s to %(upper)s.")
            % {"name": name, "lower": lower, "upper": upper}
        )
    return float(value)


def _is_share(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0.0 < float(value) <= 1.0


def _rule_error(message: str) -> ServiceError:
    return ServiceError(message, code="invalid_rule")


def _set_share(project: Project, share: float | None) -> float:
    rule = ReleaseRule.objects.select_for_update().filter(pk=release_rule_for(project).pk).get()
    rule.challenger_share = share if share is not None else alias_selectors.starting_share(rule)
    rule.save(update_fields=["challenger_share", "updated_at"])
    return rule.challenger_share


def _drop(
    version: ModelVersion,
    *,
    user: Any | None,
    rule: str,
    reason: str,
    kind: str = VersionEvent.Kind.ALIAS_REMOVED,
    figures: dict[str, Any] | None = None,
) -> None:
    held = version.alias
    version.alias = ""
    version.save(update_fields=["alias"])
    if held == Alias.CHALLENGER:
        reset_challenger_share(project_id=version.project_id)
    record_version_event(version=version, kind=kind, alias=held, user=user, rule=rule, reason=reason, figures=figures)


def release_retrained_version(*, version: ModelVersion, texts: list[str], label_keys: list[str]) -> str:
    """Where a version of the automatic retrain goes: the owner's `retrain_alias` (challenger at the starting
    share, or shadow) if the publishing gate passes on its validation items, else it stays a candidate. With
    no champion yet it stays a candidate too: the first champion is the owner's choice. Returns what happened,
    for the run's log."""
    from modeling.services.publish_gate import decide

    rule = release_rule_for(version.project)
    if alias_selectors.champion_version_id(version.project) is None:
        reason = gettext("There is no champion yet: make one on the model page.")
        record_version_event(version=version, kind=VersionEvent.Kind.KEPT_CANDIDATE, rule="auto_retrain", reason=reason)
        return reason
    try:
        decision = decide(candidate=version, texts=texts, label_keys=label_keys)
    except Exception as exc:  # the version is sound; only the comparison failed, so it stays a candidate
        decision = {"passed": False, "reason": f"The gate could not score the versions ({type(exc).__name__}: {exc})."}
    ModelVersion.objects.filter(pk=version.pk).update(gate=decision)
    version.gate = decision
    if not decision["passed"]:
        record_version_event(
            version=version,
            kind=VersionEvent.Kind.KEPT_CANDIDATE,
            rule="auto_retrain",
            reason=decision["reason"],
            figures=decision,
        )
        return f"v{version.number} stays a candidate: {decision['reason']}"
    set_alias(
        version=version, alias=rule.retrain_alias, rule="auto_retrain", reason=decision["reason"], figures=decision
    )
    return f"v{version.number} is now the {rule.retrain_alias}: {decision['reason']}"
