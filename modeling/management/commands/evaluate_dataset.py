"""Measure route 1 on a labelled dataset through the app's own services.

    manage.py evaluate_dataset --train T.jsonl --val V.jsonl --test X.jsonl \\
        [--route probe|tfidf] [--backbone NAME] [--fallback-label LABEL] [--json OUT]

A throw-away project is created, the three files are imported with the import service (their labels become a
published taxonomy; the fallback label maps to the project's 其他, and a dataset whose own label is 其他 has it
mapped there without --fallback-label), the items are put in the split their file names, a training run is
executed in-process by the same service the Celery task calls, and the test metrics of the resulting model
version are printed, with the items that fitted the temperature, the threshold and the out-of-scope score
(``calibration_items``) and the warning of an unreachable abstention target. The project, its artifacts and
uploads are deleted afterwards; the feature cache is kept, so a second evaluation on the same texts extracts
nothing."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

SPLITS = ("train", "val", "test")


FALLBACK_DATA_PRECISION_TARGET = 0.97
# With out-of-scope examples in train: the most out-of-scope texts caught at this in-scope accuracy on val.
FALLBACK_DATA_IN_SCOPE_ACCURACY_TARGET = 0.95


class Command(BaseCommand):
    help = "Train and evaluate route 1 on train/val/test JSONL files in a throw-away project."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--train", required=True, type=Path)
        parser.add_argument("--val", required=True, type=Path)
        parser.add_argument("--test", required=True, type=Path)
        parser.add_argument("--route", choices=["probe", "tfidf"], default="probe")
        parser.add_argument("--backbone", default=None, help="pack name, folder, .gguf file or hub id")
        parser.add_argument("--fallback-label", default=None, help="the dataset's out-of-scope label, e.g. oos")
        parser.add_argument("--params", default="{}", help="extra training params as JSON, e.g. '{\"hybrid\": false}'")
        parser.add_argument(
            "--abstain-kind",
            choices=["precision", "coverage", "macro_f1", "balanced", "in_scope_acc"],
            default=None,
            help="abstention target kind (default: precision 0.9; with --fallback-label: in_scope_acc 0.95 "
            "when train holds that label, else precision 0.97)",
        )
        parser.add_argument("--abstain-target", type=float, default=None)
        parser.add_argument("--json", type=Path, default=None, help="write the result to this file")
        parser.add_argument("--keep", action="store_true", help="keep the project (for inspection)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            params = json.loads(options["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise CommandError("--params must be a JSON object")
        if options["backbone"]:
            params["backbone"] = options["backbone"]
        files = {split: options[split] for split in SPLITS}
        for split, path in files.items():
            if not path.is_file():
                raise CommandError(f"--{split} {path} does not exist")
        result = evaluate_files(
            files,
            route=options["route"],
            params=params,
            fallback_label=options["fallback_label"],
            abstain=(options["abstain_kind"], options["abstain_target"]),
            keep=options["keep"],
            log=lambda message: self.stderr.write(message),
        )
        text = json.dumps(result, ensure_ascii=False, indent=1)
        self.stdout.write(text)
        if options["json"]:
            options["json"].parent.mkdir(parents=True, exist_ok=True)
            options["json"].write_text(text + "\n", encoding="utf-8")


def _read_labels(path: Path) -> list[str]:
    labels = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CommandError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(record, dict) or "label" not in record:
                raise CommandError(f"{path}:{number}: every line needs a 'label'")
            labels.append(str(record["label"]))
    return labels


# Characters a taxonomy key may not hold (the taxonomy service refuses them); dataset labels may use them.
_KEY_UNSAFE = re.compile(r"[\s/\\?#%]")


def label_keys_for(labels: list[str]) -> dict[str, str]:
    """Dataset label -> taxonomy key (unsafe characters become "_"; the label stays the display name)."""
    mapping = {label: _KEY_UNSAFE.sub("_", label)[:64] for label in labels}
    if len(set(mapping.values())) != len(mapping):
        raise CommandError("two dataset labels map to the same taxonomy key; rename them in the files")
    return mapping


def _mapped_copy(path: Path, out: Path, keys: dict[str, str], fallback_label: str | None, fallback_key: str) -> None:
    """The file with labels turned into taxonomy keys and the out-of-scope label into the fallback key."""
    with path.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            record = json.loads(line)
            label = str(record["label"])
            record["label"] = fallback_key if fallback_label is not None and label == fallback_label else keys[label]
            dst.write(json.dumps(record, ensure_ascii=False) + "\n")


def _default_abstention(
    abstain: tuple[str | None, float | None], fallback_label: str | None, fallback_trained: bool
) -> tuple[str | None, float | None]:
    """The files carry real out-of-scope texts and an answered one counts as an error. With out-of-scope
    examples in train, catch as many as in-scope accuracy >= 0.95 allows; without, hold answered texts to a
    stricter precision than the app's default so out-of-scope texts fall below tau."""
    kind, target = abstain
    if kind is not None or not fallback_label:
        return kind, target
    if fallback_trained:
        return "in_scope_acc", target or FALLBACK_DATA_IN_SCOPE_ACCURACY_TARGET
    return "precision", target or FALLBACK_DATA_PRECISION_TARGET


def evaluate_files(
    files: dict[str, Path],
    *,
    route: str,
    params: dict[str, Any],
    fallback_label: str | None,
    abstain: tuple[str | None, float | None] = (None, None),
    keep: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    from labeling.models import Item
    from labeling.services.imports import run_import, start_import
    from labeling.services.projects import create_project
    from labeling.services.taxonomy import FALLBACK_KEY, add_label, publish_draft
    from modeling.services import training

    started = time.perf_counter()
    labels = {split: _read_labels(path) for split, path in files.items()}
    seen = {label for split_labels in labels.values() for label in split_labels}
    if fallback_label is None and FALLBACK_KEY in seen:
        # Chinese data often carries 其他 as an ordinary label with many examples: it is the fallback, trained
        # as a class, and uncertain texts are sent to it as well.
        fallback_label = FALLBACK_KEY
        log(f"the dataset's label {FALLBACK_KEY!r} is used as the fallback label")
    names = sorted(seen - {fallback_label})
    keys = label_keys_for(names)
    if FALLBACK_KEY in keys.values():
        raise CommandError(
            f"the dataset uses the fallback key {FALLBACK_KEY!r} as an ordinary label next to the fallback label "
            f"{fallback_label!r}; merge the two or drop --fallback-label"
        )
    kind, target = _default_abstention(abstain, fallback_label, fallback_label in set(labels["train"]))
    extra = {k: v for k, v in {"abstain_target_kind": kind, "abstain_target": target}.items() if v is not None}
    project = create_project(
        slug=f"eval-{uuid.uuid4().hex[:10]}", name="evaluate_dataset (temporary)", max_text_chars=10_000, **extra
    )
    workdir = Path(tempfile.mkdtemp(prefix="sceneclf-eval-"))
    try:
        draft = project.taxonomy_versions.get(status="draft")
        for name, key in keys.items():
            add_label(draft=draft, data={"key": key, "name": name[:100]})
        publish_draft(draft=draft)
        for split in SPLITS:
            mapped = workdir / f"{split}.jsonl"
            _mapped_copy(files[split], mapped, keys, fallback_label, FALLBACK_KEY)
            with mapped.open("rb") as handle:
                job = start_import(project=project, content=handle, file_name=mapped.name, source=split, enqueue=False)
            job = run_import(job.id)
            if job.status != "done":
                raise CommandError(f"importing {files[split]} failed: {job.error}")
            log(f"{split}: {job.created_count} items, {job.duplicate_count} duplicates, {job.rejected_count} rejected")
            # Items a file brought in belong to that file's split (a text seen in an earlier file keeps its split).
            Item.objects.filter(project=project, source=split).update(split=split)
        import_seconds = time.perf_counter() - started
        run = training.start_training_run(project=project, route=route, params=params, trigger="cli", dispatch=False)
        training.execute_training_run(run.id)
        run.refresh_from_db()
        if run.status != "succeeded":
            raise CommandError(f"training failed: {run.error}")
        return _summary(run, route, fallback_label, import_seconds, time.perf_counter() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not keep:
            _delete_project(project)


def _summary(run: Any, route: str, fallback_label: str | None, import_seconds: float, total: float) -> dict[str, Any]:
    version = run.model_version
    test = version.metrics.get("test") or {}
    calibration = test.get("calibration") or {}
    abstention = test.get("abstention") or {}
    calibration_record = version.metrics.get("calibration_items") or {}
    timings = run.timings or {}
    result: dict[str, Any] = {
        "route": route,
        "backbone": version.backbone_name or None,
        "head": version.metrics.get("head_kind"),
        "n_train": version.metrics["counts"]["train"],
        "n_val": version.metrics["counts"]["val"],
        "n_test": version.metrics["counts"]["test"],
        "accuracy": test.get("accuracy"),
        "macro_f1": test.get("macro_f1"),
        "ece_before": calibration.get("ece_before"),
        "ece_after": calibration.get("ece"),
        "temperature": version.temperature,
        "threshold": version.threshold,
        "coverage": abstention.get("coverage"),
        "selective_accuracy": abstention.get("selective_accuracy"),
        "target_met_on_val": version.metrics.get("target_met_on_val"),
        "warning": version.metrics.get("abstention_warning"),
        "ood_kind": abstention.get("ood_kind"),
        "ood_threshold": abstention.get("ood_threshold"),
        "calibration_items": calibration_record,
        "extract_texts_per_s": timings.get("extract_texts_per_s"),
        "n_extracted": timings.get("n_extracted"),
        "fit_seconds": timings.get("fit_seconds"),
        "import_seconds": round(import_seconds, 3),
        "total_seconds": round(total, 3),
    }
    if fallback_label is not None:
        result.update(
            in_scope_accuracy=abstention.get("in_scope_accuracy"),
            oos_recall=abstention.get("oos_recall"),
            oos_precision=abstention.get("oos_precision"),
            oos_auroc_msp=abstention.get("oos_auroc_msp"),
            oos_auroc_score=abstention.get("oos_auroc_score"),
        )
        val = (version.metrics.get("val") or {}).get("abstention") or {}
        result["val_in_scope_accuracy"], result["val_oos_recall"] = val.get("in_scope_accuracy"), val.get("oos_recall")
        result["val_and_test"] = _pooled(val, result["n_val"], abstention, result["n_test"])
    return result


def _pooled(val: dict, n_val: int, test: dict, n_test: int) -> dict[str, float | None]:
    """In-scope accuracy and OOS recall over val and test together (val tuned the rule: optimistic there, but
    twice the out-of-scope texts of test alone)."""
    parts = [(val, n_val), (test, n_test)]
    if any(part.get("in_scope_accuracy") is None or part.get("n_oos") is None for part, _ in parts):
        return {"in_scope_accuracy": None, "oos_recall": None}
    n_in = sum(n - part["n_oos"] for part, n in parts)
    n_oos = sum(part["n_oos"] for part, _ in parts)
    correct = sum(part["in_scope_accuracy"] * (n - part["n_oos"]) for part, n in parts)
    caught = sum((part.get("oos_recall") or 0.0) * part["n_oos"] for part, _ in parts)
    return {
        "in_scope_accuracy": round(correct / n_in, 4) if n_in else None,
        "oos_recall": round(caught / n_oos, 4) if n_oos else None,
    }


def _delete_project(project: Any) -> None:
    from modeling.models import ModelVersion

    folders = [Path(p) for p in ModelVersion.objects.filter(project=project).values_list("artifacts_dir", flat=True)]
    uploads = Path(settings.UPLOAD_DIR) / "imports" / str(project.id)
    # Taxonomy references are RESTRICT, so the project's own cascade removes everything in one go.
    project.delete()
    for folder in [*folders, uploads]:
        shutil.rmtree(folder, ignore_errors=True)
