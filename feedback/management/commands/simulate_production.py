"""Simulate the production loop on labelled JSONL files (contract: docs/OPERATIONS.md, "Simulating the loop").

    manage.py simulate_production --train T.jsonl --val V.jsonl --stream S.jsonl [--feedback-rate 0.1] \\
        [--batch 500] [--fallback-label LABEL] [--json OUT]

Prints one line per batch and writes {"batches": [{"batch", "champion", "challenger", "challenger_share",
"accuracy", "macro_f1", "abstain_rate", "estimated_accuracy", "realised_accuracy", "drift_score",
"drift_alert"}, ...], "settings": {...}} to --json. The work is feedback.services.simulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from feedback.services.simulation import SimulationConfig, run_simulation
from sceneclf_site.api_errors import ServiceError


class Command(BaseCommand):
    help = "Stream a labelled file through predict, feedback, review, retrain and the release rule, in batches."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--train", required=True, type=Path, help="labelled JSONL the first model trains on")
        parser.add_argument("--val", required=True, type=Path, help="labelled JSONL it is calibrated on")
        parser.add_argument("--stream", required=True, type=Path, help="labelled JSONL sent through predict")
        parser.add_argument("--feedback-rate", type=float, default=0.1, help="share of each batch given feedback")
        parser.add_argument("--batch", type=int, default=500, help="stream items per batch")
        parser.add_argument("--fallback-label", default=None, help="the files' out-of-scope label (becomes 其他)")
        parser.add_argument("--json", type=Path, default=None, help="write the result to this file")
        parser.add_argument("--route", default="probe", help="the route of every version (default probe)")
        parser.add_argument("--params", default="{}", help="the route's params as JSON")
        parser.add_argument("--min-labelled", type=int, default=20, help="the release rule's labelled minimum")
        parser.add_argument("--retrain-alias", choices=["challenger", "shadow"], default="challenger")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--keep", action="store_true", help="keep the simulation's project afterwards")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("train", "val", "stream"):
            if not options[name].is_file():
                raise CommandError(f"--{name} {options[name]} does not exist")
        try:
            params = json.loads(options["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from exc
        config = SimulationConfig(
            train=options["train"],
            val=options["val"],
            stream=options["stream"],
            feedback_rate=options["feedback_rate"],
            batch=options["batch"],
            fallback_label=options["fallback_label"],
            route=options["route"],
            params=params,
            min_labelled=options["min_labelled"],
            retrain_alias=options["retrain_alias"],
            seed=options["seed"],
            keep=options["keep"],
        )
        try:
            result = run_simulation(config, log=lambda line: self.stderr.write(line))
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        text = json.dumps(result, ensure_ascii=False, indent=1)
        self.stdout.write(text)
        if options["json"]:
            options["json"].parent.mkdir(parents=True, exist_ok=True)
            options["json"].write_text(text + "\n", encoding="utf-8")
