"""Measure a route on labelled JSONL files, through the engine alone (no project, no database rows).

    manage.py evaluate_dataset --route probe|tfidf|<any registered> --train T.jsonl --val V.jsonl \\
        --test X.jsonl [--params JSON] [--budget-minutes N] [--fallback-label LABEL] [--taxonomy TAX.yaml] \\
        [--cascade ROUTE [--cascade-params JSON] [--recheck-tau T] [--combine RULE]] [--robustness] [--json OUT]

The engine trains a version of the route on train, calibrates it on val, saves it in a temporary folder and
loads it back as serving does; the test metrics are printed with the items that fitted the temperature, the
threshold and the out-of-scope score (``calibration_items``), the training and predict times, and with
``--robustness`` the metrics on perturbed copies of the test set. With ``--cascade ROUTE`` a second route
(trained on the same splits, or zero-shot from ``--taxonomy``) re-checks the test texts the primary is unsure
of; the top-level metrics are the final answers' and ``cascade`` adds the share re-checked, the metrics
before and after, and every combine rule over a sweep of the re-check threshold. ``--taxonomy`` (a taxonomy file in the
project's export format) gives routes the labels' names, definitions and examples; a route that does not
train (zero-shot) needs only ``--test`` and ``--taxonomy``. The feature cache is kept, so a second
evaluation on the same texts extracts nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

ABSTAIN_KINDS = ["precision", "coverage", "macro_f1", "balanced", "in_scope_acc"]


class Command(BaseCommand):
    help = "Train and evaluate a route on train/val/test JSONL files, through the engine."

    def add_arguments(self, parser: Any) -> None:
        from modeling.engine.cascade import COMBINE_RULES, DEFAULT_RULE
        from modeling.engine.routes import route_names

        parser.add_argument("--route", choices=route_names(), default="probe")
        parser.add_argument("--train", type=Path, default=None)
        parser.add_argument("--val", type=Path, default=None)
        parser.add_argument("--test", required=True, type=Path)
        parser.add_argument("--params", default="{}", help="the route's params as JSON, e.g. '{\"hybrid\": false}'")
        parser.add_argument("--backbone", default=None, help="pack name, folder, .gguf file or hub id")
        parser.add_argument("--budget-minutes", type=float, default=None, help="training time budget")
        parser.add_argument("--fallback-label", default=None, help="the dataset's out-of-scope label, e.g. oos")
        parser.add_argument("--taxonomy", type=Path, default=None, help="taxonomy file (YAML/JSON export)")
        parser.add_argument(
            "--abstain-kind",
            choices=ABSTAIN_KINDS,
            default=None,
            help="abstention target kind (default: precision 0.9; with --fallback-label: in_scope_acc 0.95 "
            "when train holds that label, else precision 0.97)",
        )
        parser.add_argument("--abstain-target", type=float, default=None)
        parser.add_argument("--cascade", choices=route_names(), default=None, help="route that re-checks")
        parser.add_argument("--cascade-params", default="{}", help="the re-check route's params as JSON")
        parser.add_argument(
            "--recheck-tau", type=float, default=None, help="re-check below this confidence (default: threshold)"
        )
        parser.add_argument("--combine", choices=list(COMBINE_RULES), default=DEFAULT_RULE, help="combine rule")
        parser.add_argument("--robustness", action="store_true", help="add metrics on perturbed test copies")
        parser.add_argument("--json", type=Path, default=None, help="write the result to this file")

    def handle(self, *args: Any, **options: Any) -> None:
        from modeling.engine.evaluation.dataset import evaluate_cascade, evaluate_files, read_splits
        from modeling.engine.files import JsonlError
        from modeling.engine.routes.base import ParamsError

        params = _params(options["params"])
        if options["backbone"]:
            params["backbone"] = options["backbone"]
        for split in ("train", "val", "test"):
            path = options[split]
            if path is not None and not path.is_file():
                raise CommandError(f"--{split} {path} does not exist")
        calibration = {
            k: v
            for k, v in {
                "abstain_target_kind": options["abstain_kind"],
                "abstain_target": options["abstain_target"],
            }.items()
            if v is not None
        }
        try:
            splits = read_splits(options["train"], options["val"], options["test"])
            taxonomy = _taxonomy(options["taxonomy"]) if options["taxonomy"] else None
            common = {
                "calibration": calibration,
                "fallback_label": options["fallback_label"],
                "taxonomy": taxonomy,
                "budget_minutes": options["budget_minutes"],
                "model_root": Path(settings.MODEL_ROOT),
                "cache_dir": Path(settings.FEATURE_CACHE_DIR),
                "threads": int(settings.TORCH_THREADS),
                "extras": {"default_backbone": settings.DEFAULT_BACKBONE},
                "log": lambda message: self.stderr.write(message),
            }
            if options["cascade"]:
                result, predictor = evaluate_cascade(
                    options["route"],
                    options["cascade"],
                    splits,
                    params=params,
                    recheck_params=_params(options["cascade_params"]),
                    tau=options["recheck_tau"],
                    rule=options["combine"],
                    **common,
                )
            else:
                result, predictor = evaluate_files(options["route"], splits, params=params, **common)
        except (ParamsError, JsonlError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if options["robustness"]:
            result["robustness"] = _robustness(predictor, splits.test)
        text = json.dumps(result, ensure_ascii=False, indent=1)
        self.stdout.write(text)
        if options["json"]:
            options["json"].parent.mkdir(parents=True, exist_ok=True)
            options["json"].write_text(text + "\n", encoding="utf-8")


def _params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise CommandError("--params must be a JSON object")
    return params


def _taxonomy(path: Path) -> Any:
    """The engine's Taxonomy from a taxonomy file in the project's export format."""
    from labeling.taxonomy_io import TaxonomyDocumentError, guess_format, parse_document, specs_from_document
    from modeling.engine.routes.base import LabelInfo, Taxonomy

    if not path.is_file():
        raise CommandError(f"--taxonomy {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        specs, _ = specs_from_document(parse_document(text, guess_format(path.name, text)))
    except TaxonomyDocumentError as exc:
        raise CommandError(f"--taxonomy {path}: {'; '.join(exc.problems)}") from exc
    fallback = next(spec.key for spec in specs if spec.is_fallback)
    ordered = [s for s in specs if not s.is_fallback] + [s for s in specs if s.is_fallback]
    labels = tuple(
        LabelInfo(
            key=s.key,
            name=s.name,
            definition=s.definition,
            rules=tuple(line.strip() for line in s.decision_rules.splitlines() if line.strip()),
            examples=tuple(s.examples),
            edge_cases=tuple(s.edge_cases) + tuple(s.counter_examples),
        )
        for s in ordered
    )
    return Taxonomy(labels, fallback)


def _robustness(predictor: Any, test: Any) -> dict[str, Any]:
    try:
        from modeling.engine.evaluation.robustness import robustness_report
    except ImportError as exc:
        raise CommandError(
            "--robustness needs modeling.engine.evaluation.robustness, which this checkout does not have"
        ) from exc

    def predict_labels(texts: list[str]) -> list[str]:
        return [p.label for p in predictor.predict(texts, k=1)]

    return robustness_report(predict_labels, test.texts, test.labels, seed=0)
