"""The figures a release rule compares, computed from the prediction log: for the champion and the challenger
on the same window, the labelled count, macro-F1 and accuracy (where feedback or a review gave the true
label, as on the dashboard), the abstain rate and latency p50 / p99."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from feedback.selectors.monitoring import LoggedPrediction, figures, logged_predictions
from labeling.models import Project
from modeling.models import Alias, ModelVersion
from modeling.selectors.aliases import last_step_event


@dataclass(frozen=True)
class Comparison:
    start: datetime
    end: datetime
    champion: dict[str, Any]
    challenger: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "champion": self.champion,
            "challenger": self.challenger,
        }


def challenger_window_start(challenger: ModelVersion) -> datetime:
    """The challenger's window opens when it became the challenger or its share last moved."""
    event = last_step_event(challenger)
    return event.created_at if event is not None else challenger.created_at


def compare_challenger(
    project: Project, champion: ModelVersion | None, challenger: ModelVersion, *, now: datetime | None = None
) -> Comparison:
    start, end = challenger_window_start(challenger), now or timezone.now()
    rows = logged_predictions(project, start, end)
    return Comparison(
        start=start,
        end=end,
        champion=_of(rows, champion, Alias.CHAMPION),
        challenger=_of(rows, challenger, Alias.CHALLENGER),
    )


def _of(rows: list[LoggedPrediction], version: ModelVersion | None, role: str) -> dict[str, Any]:
    if version is None:
        return {"version": None, "volume": 0, "labelled": 0}
    mine = [row for row in rows if row.role == role and row.version == f"v{version.number}"]
    return {"version": version.number, "labelled": 0, **figures(mine)}
