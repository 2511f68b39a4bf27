"""Import JSONL/CSV/XLSX files of feedback texts as items (and gold labels), as a resumable background job.

The job works in chunks: each chunk (items, gold labels, counters, rejections, progress) commits in one
transaction, so progress is visible while it runs, a crash loses at most the chunk in flight, and a re-run
skips the lines already committed. De-duplication is by text hash within the file and against the database,
so importing the same file again creates nothing. A text that is already in the project with another gold
label is a conflict for adjudication, not a plain duplicate. Lines with an unknown label are held (masked, like
items) until the owner decides what becomes of them (`labeling.services.import_review`).
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import shutil
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import charset_normalizer
import openpyxl
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.models import (
    GoldConflict,
    GoldLabel,
    ImportHeldLine,
    ImportJob,
    Item,
    ItemEvent,
    Label,
    Project,
    TaxonomyVersion,
)
from labeling.pii import mask_pii, protect_data, protect_value
from labeling.selectors.items import latest_published_taxonomy, published_label_keys
from labeling.services.history import record_events
from labeling.services.items import PreparedText, item_from_prepared, prepare_text
from labeling.services.splits import assign_missing_splits
from sceneclf_site.api_errors import ServiceError
from sceneclf_site.parsers import JSONTooDeep, UnstorableJSON, document_problem, loads_checked, max_json_depth

logger = logging.getLogger(__name__)

CHUNK_SIZE = 500
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
CSV_SUFFIXES = {".csv"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
OLD_EXCEL_SUFFIXES = {".xls"}
ZIP_MAGIC = b"PK\x03\x04"
UNKNOWN_LABEL = "unknown_label"
ID_KEYS = ("external_id", "id")
SNIFF_LINES = 50
# Labels that mean "none of the scenes" in Chinese datasets; they map to the project's fallback label.
FALLBACK_WORDS = ("其他",)
MAX_FALLBACK_ALIASES = 20
# charset-normalizer names the smallest code page that fits; decode with its superset so rarer characters pass.
ENCODING_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs", "cp950": "big5hkscs"}
CHINESE_ENCODINGS = ("gb18030", "big5hkscs")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (not UTF-8, not JSONL/CSV). Becomes the job's error."""


@dataclass
class ParsedLine:
    line: int
    text: str | None = None
    label: str | None = None
    external_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    reject_reason: str | None = None
    reject_code: str = ""


@dataclass
class _Candidate:
    parsed: ParsedLine
    prepared: PreparedText


@dataclass(frozen=True)
class LabeledCopy:
    """A line whose text the project already has (or the file had earlier), with a label of its own."""

    text_hash: str
    label: str
    line: int


@dataclass
class ChunkOutcome:
    created: int = 0
    duplicates: int = 0
    labeled: int = 0
    conflicts: int = 0
    gold: list[GoldLabel] = field(default_factory=list)  # gold labels this chunk created
    rejections: list[dict[str, Any]] = field(default_factory=list)
    hashes: set[str] = field(default_factory=set)  # texts this chunk stored or found
    held: list[ImportHeldLine] = field(default_factory=list)  # unsaved: lines with an unknown label
    copies: list[LabeledCopy] = field(default_factory=list)


# --- starting a job ---------------------------------------------------------------------------


def start_import(
    *,
    project: Project,
    content: IO[bytes] | Any,
    file_name: str,
    source: str = "",
    created_by: Any | None = None,
    enqueue: bool = True,
    encoding: str = "",
    fallback_aliases: Iterable[str] = (),
) -> ImportJob:
    """Store the uploaded file and create a pending job; with `enqueue`, queue `labeling.tasks.run_import`
    once the job row is committed. `content` is a binary file object or a Django UploadedFile.

    `encoding` names the file's encoding (detected when empty); `fallback_aliases` are dataset labels that mean
    the project's fallback label (e.g. "other", "oos")."""
    encoding = _checked_encoding(encoding)
    aliases = _checked_aliases(fallback_aliases)
    # A file name can carry personal data too ("13812345678的投诉.csv"): it is stored like a metadata value.
    original = Path(file_name or "upload")
    file_name = (protect_value(original.stem, project.pii_field_mode) + original.suffix)[-255:]
    file_format = _format_from_name(file_name)
    upload_dir = Path(settings.UPLOAD_DIR) / "imports" / str(project.id)
    upload_dir.mkdir(parents=True, exist_ok=True)
    stored_path = upload_dir / f"{uuid.uuid4().hex}{Path(file_name).suffix.lower()[:10]}"
    try:
        _store_upload(content, stored_path)
        if stored_path.stat().st_size == 0:
            raise ServiceError(gettext("The file is empty."), code="empty_file")
        job = ImportJob.objects.create(
            project=project,
            file_path=str(stored_path),
            file_name=file_name,
            file_format=file_format,
            encoding=encoding,
            fallback_aliases=aliases,
            source=protect_value(source, project.pii_field_mode)[:100] if source else file_name[:100],
            created_by=created_by if getattr(created_by, "pk", None) else None,
        )
    except BaseException:
        _remove_upload(stored_path)  # no job will ever read it
        raise
    if enqueue:
        transaction.on_commit(lambda: enqueue_import(job.id))
    return job


def _store_upload(content: IO[bytes] | Any, stored_path: Path) -> None:
    with stored_path.open("wb") as out:
        if hasattr(content, "chunks"):
            for piece in content.chunks():
                out.write(piece)
        else:
            shutil.copyfileobj(content, out)


def _checked_encoding(encoding: str) -> str:
    encoding = (encoding or "").strip()
    if not encoding:
        return ""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ServiceError(
            gettext("Unknown encoding '%(value)s'. Use a name such as utf-8, gb18030 (GBK) or big5.")
            % {"value": encoding[:40]},
            code="unknown_encoding",
        ) from None
    return ENCODING_SUPERSETS.get(name, name)


def _checked_aliases(aliases: Iterable[str]) -> list[str]:
    cleaned = [_label_form(alias) for alias in aliases if isinstance(alias, str) and alias.strip()]
    if len(cleaned) > MAX_FALLBACK_ALIASES:
        raise ServiceError(
            gettext("At most %(max_fallback_aliases)s fallback aliases.")
            % {"max_fallback_aliases": MAX_FALLBACK_ALIASES},
            code="too_many_aliases",
        )
    if any(len(alias) > 64 for alias in cleaned):
        raise ServiceError(gettext("A fallback alias is at most 64 characters."), code="invalid_alias")
    return list(dict.fromkeys(cleaned))


def _label_form(label: str) -> str:
    """How dataset labels are compared: NFKC (full-width letters fold) and outer spaces dropped."""
    return unicodedata.normalize("NFKC", label).strip()


def enqueue_import(job_id: int) -> None:
    """Sends the job's task; BrokerUnavailable (503) when the broker is down. The job then keeps an empty
    task id ("waiting for the queue") and `resume_stalled_imports` sends it once the broker is back."""
    from labeling.tasks import run_import as run_import_task  # tasks import this module
    from sceneclf_site.queueing import send_task

    task_id = send_task(run_import_task, args=[job_id])
    ImportJob.objects.filter(pk=job_id, task_id="").update(task_id=task_id or "")


def _format_from_name(file_name: str) -> str:
    suffix = Path(file_name).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in XLSX_SUFFIXES:
        return "xlsx"
    if suffix in OLD_EXCEL_SUFFIXES:
        raise ServiceError(
            gettext("Old Excel files (.xls) cannot be read: save the sheet as .xlsx, CSV or JSONL and upload again."),
            code="old_excel",
        )
    return ""  # decided by sniffing the content in the job


# --- running a job ----------------------------------------------------------------------------


def run_import(job_id: int) -> ImportJob:
    """Run (or resume) an import job. Safe to call again: committed lines are skipped."""
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
        return job
    try:
        return _run_job(job, Path(job.file_path))
    finally:
        # The upload holds unmasked text: once the job has ended, however it ended, the file goes. A worker
        # killed mid-job leaves the job running and the file in place, so the job can resume.
        ended = ImportJob.objects.filter(pk=job.pk, status__in=[ImportJob.Status.DONE, ImportJob.Status.FAILED])
        for file_path in ended.values_list("file_path", flat=True):
            _remove_upload(Path(file_path))


def _run_job(job: ImportJob, path: Path) -> ImportJob:
    try:
        if not path.exists():
            raise ImportFileError("The uploaded file is no longer on the server; upload it again.")
        if not _is_workbook(path, job.file_format):
            path = _ensure_utf8(job, path)
        file_format = _check_file(path, job.file_format)
        total = _count_records(path, file_format)
    except ImportFileError as exc:
        return _fail(job, str(exc))
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING, file_format=file_format, total_lines=total
    )
    job.refresh_from_db()
    try:
        _import_records(job, _parse_file(path, file_format))
    except ImportFileError as exc:
        return _fail(job, str(exc))
    except Exception as exc:
        # Log the kind only: messages from parsers or the database may quote user text.
        logger.error("import job %s stopped: %s", job.pk, type(exc).__name__)
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            error=gettext("The import stopped unexpectedly (%(name)s) after line %(processed_lines)s.")
            % {"name": type(exc).__name__, "processed_lines": job.processed_lines},
            finished_at=timezone.now(),
        )
        raise
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.DONE, finished_at=timezone.now())
    job.refresh_from_db()
    logger.info(
        "import job %s done: created=%s duplicate=%s rejected=%s labeled=%s",
        job.pk, job.created_count, job.duplicate_count, job.rejected_count, job.labeled_count,
    )  # fmt: skip
    return job


def _fail(job: ImportJob, message: str) -> ImportJob:
    message = mask_pii(message)  # it may quote the file (a CSV header)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.FAILED, error=message, finished_at=timezone.now()
    )
    job.refresh_from_db()
    logger.warning("import job %s failed: %s", job.pk, message)
    return job


def _remove_upload(path: Path) -> None:
    path.unlink(missing_ok=True)


def _import_records(job: ImportJob, records: Iterable[ParsedLine]) -> None:
    project = job.project
    taxonomy = latest_published_taxonomy(project)
    labels = LabelResolver.for_taxonomy(taxonomy, job.fallback_aliases)
    seen_hashes: set[str] = set()
    chunk: list[ParsedLine] = []
    for index, record in enumerate(records):
        if index < job.processed_lines:
            continue  # committed by an earlier run of this job
        chunk.append(record)
        if len(chunk) >= CHUNK_SIZE:
            _commit_chunk(job, chunk, taxonomy, labels, seen_hashes)
            chunk = []
    if chunk:
        _commit_chunk(job, chunk, taxonomy, labels, seen_hashes)


def _commit_chunk(
    job: ImportJob,
    chunk: list[ParsedLine],
    taxonomy: TaxonomyVersion | None,
    labels: LabelResolver,
    seen_hashes: set[str],
) -> None:
    for attempt in range(3):
        try:
            with transaction.atomic():
                outcome = store_lines(job, chunk, taxonomy, labels, seen_hashes)
                _add_to_job(job, outcome, len(chunk))
        except IntegrityError:
            # A concurrent import stored some of the same texts between our lookup and insert: look again.
            job.refresh_from_db()
            if attempt == 2:
                raise
        else:
            seen_hashes.update(outcome.hashes)  # only once the chunk is committed
            return


def store_lines(
    job: ImportJob,
    lines: list[ParsedLine],
    taxonomy: TaxonomyVersion | None,
    labels: LabelResolver,
    seen_hashes: set[str],
) -> ChunkOutcome:
    """Items, gold labels, their history, conflicts and held lines for some lines of the job's file; call it in
    a transaction. Also used when held lines are run again."""
    outcome = _store_chunk(job.project, lines, taxonomy, labels, seen_hashes, job.source)
    _record_imported_gold(job, outcome.gold)
    outcome.conflicts = _raise_conflicts(job, outcome.copies)
    outcome.duplicates -= outcome.conflicts
    for held in outcome.held:
        held.job = job
    ImportHeldLine.objects.bulk_create(outcome.held, batch_size=CHUNK_SIZE)
    return outcome


def _add_to_job(job: ImportJob, outcome: ChunkOutcome, lines: int) -> None:
    job.processed_lines += lines
    job.created_count += outcome.created
    job.duplicate_count += outcome.duplicates
    job.conflict_count += outcome.conflicts
    job.rejected_count += len(outcome.rejections)
    job.labeled_count += outcome.labeled
    job.rejections = [*job.rejections, *outcome.rejections]
    job.save(
        update_fields=[
            "processed_lines", "created_count", "duplicate_count", "conflict_count", "rejected_count",
            "labeled_count", "rejections",
        ]
    )  # fmt: skip


def _rejection(parsed: ParsedLine, code: str, reason: str) -> dict[str, Any]:
    # Reasons quote the line (a label, a field name): they are stored, so they are masked like texts.
    label = mask_pii(_label_form(parsed.label or ""))[:64] if code == UNKNOWN_LABEL else ""
    return {"line": parsed.line, "reason": mask_pii(reason), "code": code, "label": label}


def _held_line(project: Project, parsed: ParsedLine, prepared: PreparedText) -> ImportHeldLine:
    mode = project.pii_field_mode
    return ImportHeldLine(
        line=parsed.line,
        label=mask_pii(_label_form(parsed.label or ""))[:64],
        text=prepared.text,
        external_id=protect_value(parsed.external_id, mode)[:200],
        metadata=protect_data(parsed.metadata, mode),
    )


def _store_chunk(
    project: Project,
    chunk: list[ParsedLine],
    taxonomy: TaxonomyVersion | None,
    labels: LabelResolver,
    seen_hashes: set[str],
    source: str,
) -> ChunkOutcome:
    outcome = ChunkOutcome()
    candidates: dict[str, _Candidate] = {}
    for parsed in chunk:
        problem = (parsed.reject_code, parsed.reject_reason) if parsed.reject_reason else None
        problem = problem or _resolve_label(parsed, taxonomy, labels)
        prepared = None
        if problem is None or problem[0] == UNKNOWN_LABEL:
            try:
                prepared = prepare_text(project, parsed.text or "")
            except ServiceError as exc:
                problem = _text_problem(exc, project)
        if problem is not None or prepared is None:
            code, reason = problem or ("", "")
            outcome.rejections.append(_rejection(parsed, code, reason))
            if code == UNKNOWN_LABEL and prepared is not None:
                outcome.held.append(_held_line(project, parsed, prepared))
            continue
        if prepared.text_hash in seen_hashes or prepared.text_hash in outcome.hashes:
            outcome.duplicates += 1
            earlier = candidates.get(prepared.text_hash)
            if earlier is not None and earlier.parsed.label is None and parsed.label:
                earlier.parsed.label = parsed.label  # a later copy may carry the label the first one lacked
            elif parsed.label:
                outcome.copies.append(LabeledCopy(prepared.text_hash, parsed.label, parsed.line))
            continue
        outcome.hashes.add(prepared.text_hash)
        candidates[prepared.text_hash] = _Candidate(parsed, prepared)
    if not candidates:
        return outcome

    # One query per chunk tells which texts the project already has, and whether they have a gold label.
    existing = {
        text_hash: (item_id, gold_id)
        for text_hash, item_id, gold_id in Item.objects.filter(
            project=project, text_hash__in=list(candidates)
        ).values_list("text_hash", "id", "gold__id")
    }
    mode = project.pii_field_mode
    new_items = [
        item_from_prepared(
            project,
            candidate.prepared,
            source=source,
            external_id=protect_value(candidate.parsed.external_id, mode),
            metadata=protect_data(candidate.parsed.metadata, mode),
        )
        for text_hash, candidate in candidates.items()
        if text_hash not in existing
    ]
    created = Item.objects.bulk_create(new_items, batch_size=CHUNK_SIZE)
    outcome.created = len(created)
    outcome.duplicates += len(candidates) - len(created)
    outcome.copies += [
        LabeledCopy(text_hash, candidate.parsed.label, candidate.parsed.line)
        for text_hash, candidate in candidates.items()
        if candidate.parsed.label and existing.get(text_hash, (None, None))[1] is not None
    ]

    item_ids = {item.text_hash: (item.id, None) for item in created} | existing
    gold = [
        GoldLabel(
            item_id=item_ids[text_hash][0],
            label_key=candidate.parsed.label,
            taxonomy=taxonomy,
            method=GoldLabel.Method.IMPORTED,
        )
        for text_hash, candidate in candidates.items()
        if candidate.parsed.label and item_ids[text_hash][1] is None
    ]
    GoldLabel.objects.bulk_create(gold, batch_size=CHUNK_SIZE)
    outcome.labeled = len(gold)
    outcome.gold = gold
    return outcome


def _record_imported_gold(job: ImportJob, gold: list[GoldLabel]) -> None:
    """History and split of each imported gold label, in the chunk's transaction."""
    if not gold:
        return
    record_events(
        ItemEvent(
            project_id=job.project_id,
            item_id=label.item_id,
            kind=ItemEvent.Kind.IMPORTED,
            actor_id=job.created_by_id,
            label_after=label.label_key,
            detail={
                "gold_changed": True,
                "method": GoldLabel.Method.IMPORTED,
                "import_job": job.pk,
                "file_name": job.file_name,
                "taxonomy_version": label.taxonomy.number,
            },
        )
        for label in gold
    )
    assign_missing_splits(project=job.project, item_ids=[label.item_id for label in gold], actor=job.created_by)


def _raise_conflicts(job: ImportJob, copies: list[LabeledCopy]) -> int:
    """Copies whose label differs from the gold label of their text: each becomes an open `GoldConflict` (the
    adjudication queue), once per item and proposed label. Returns how many lines conflict."""
    if not copies:
        return 0
    golds = {
        text_hash: (item_id, label_key)
        for text_hash, item_id, label_key in GoldLabel.objects.filter(
            item__project_id=job.project_id, item__text_hash__in={copy.text_hash for copy in copies}
        ).values_list("item__text_hash", "item_id", "label_key")
    }
    conflicting = [copy for copy in copies if copy.text_hash in golds and golds[copy.text_hash][1] != copy.label]
    open_pairs = set(
        GoldConflict.objects.filter(
            item_id__in={golds[copy.text_hash][0] for copy in conflicting}, status=GoldConflict.Status.OPEN
        ).values_list("item_id", "proposed_label")
    )
    for copy in conflicting:
        item_id, gold_label = golds[copy.text_hash]
        if (item_id, copy.label) in open_pairs:
            continue
        open_pairs.add((item_id, copy.label))
        _record_import_conflict(job, copy, item_id, gold_label)
    return len(conflicting)


def _record_import_conflict(job: ImportJob, copy: LabeledCopy, item_id: int, gold_label: str) -> None:
    # file:line reads the same in every language (it is stored, and pages show it to everyone).
    comment = f"{job.file_name}:{copy.line}"
    conflict = GoldConflict.objects.create(
        project_id=job.project_id,
        item_id=item_id,
        gold_label=gold_label,
        proposed_label=copy.label,
        proposed_by_id=job.created_by_id,
        comment=comment,
    )
    record_events(
        [
            ItemEvent(
                project_id=job.project_id,
                item_id=item_id,
                kind=ItemEvent.Kind.IMPORT_CONFLICT,
                actor_id=job.created_by_id,
                label_before=gold_label,
                label_after=copy.label,
                reason=comment,
                detail={"gold_changed": False, "import_job": job.pk, "line": copy.line, "conflict": conflict.pk},
            )
        ]
    )


@dataclass
class LabelResolver:
    """Dataset label → label key. Keys match themselves (after NFKC); the fallback's key and name, 其他 and the
    job's aliases match the fallback in any letter case, so a dataset's own 其他 / Other class becomes gold of
    the fallback label. A key always wins over an alias of the same spelling."""

    keys: dict[str, str]
    aliases: dict[str, str]

    @classmethod
    def for_taxonomy(cls, taxonomy: TaxonomyVersion | None, aliases: list[str]) -> LabelResolver:
        if taxonomy is None:
            return cls({}, {})
        keys = {_label_form(key): key for key in published_label_keys(taxonomy)}
        fallback = Label.objects.filter(taxonomy=taxonomy, is_fallback=True).values_list("key", "name").first()
        words = (*fallback, *FALLBACK_WORDS, *aliases) if fallback else ()
        return cls(keys, {_label_form(word).casefold(): fallback[0] for word in words})

    def resolve(self, label: str) -> str | None:
        form = _label_form(label)
        return self.keys.get(form) or self.aliases.get(form.casefold())


def _resolve_label(
    parsed: ParsedLine, taxonomy: TaxonomyVersion | None, labels: LabelResolver
) -> tuple[str, str] | None:
    """Replace the line's label by its key; (code, reason) to reject the line, if any."""
    label = parsed.label
    if not label:
        return None
    shown = label[:64]
    if taxonomy is None:
        return "no_taxonomy", gettext(
            "The line carries the label '%(shown)s' but the project has no published taxonomy: publish a taxonomy "
            "first."
        ) % {"shown": shown}
    key = labels.resolve(label)
    if key is None:
        return UNKNOWN_LABEL, gettext(
            "Unknown label '%(shown)s': it is not in the published taxonomy v%(number)s "
            "(a label that means the fallback can be mapped with the import option fallback_alias)."
        ) % {"shown": shown, "number": taxonomy.number}
    parsed.label = key
    return None


def _text_problem(exc: ServiceError, project: Project) -> tuple[str, str]:
    if exc.code == "text_too_long":
        length = (exc.details or {}).get("length")
        return exc.code, gettext(
            "Text too long: %(length)s characters, over the limit of %(max_text_chars)s characters "
            "(project.max_text_chars)."
        ) % {"length": length, "max_text_chars": project.max_text_chars}
    if exc.code == "empty_text":
        return exc.code, gettext("Empty text.")
    return exc.code or "invalid_text", exc.message


# --- reading files ----------------------------------------------------------------------------


def _ensure_utf8(job: ImportJob, path: Path) -> Path:
    """The path of the upload as UTF-8. A file in another encoding (named at upload, or detected) is converted
    once, to a new file the job then points to, so a resumed job never converts twice."""
    if path.stem.endswith(UTF8_MARK):
        return path
    encoding = job.encoding
    if encoding in ("", "utf-8", "utf-8-sig"):
        problem = _utf8_problem(path)
        if problem is None:
            if not encoding:
                ImportJob.objects.filter(pk=job.pk).update(encoding="utf-8")
            return path
        if encoding:
            raise ImportFileError(f"{problem}. Save it as UTF-8 and import it again.")
        encoding = _detect_encoding(path, problem)
    converted = path.with_name(f"{path.stem}{UTF8_MARK}{path.suffix}")
    _transcode(path, converted, encoding)
    ImportJob.objects.filter(pk=job.pk).update(file_path=str(converted), encoding=encoding)
    _remove_upload(path)
    return converted


UTF8_MARK = ".utf8"


def _utf8_problem(path: Path) -> str | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as raw:
        while piece := raw.read(1 << 20):
            try:
                decoder.decode(piece)
            except UnicodeDecodeError as exc:
                return gettext("The file is not UTF-8 text (invalid byte at offset %(offset)s)") % {
                    "offset": offset + exc.start
                }
            offset += len(piece)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return gettext("The file is not UTF-8 text (it ends in the middle of a character)")
    return None


def _detect_encoding(path: Path, problem: str) -> str:
    candidates = [codecs.lookup(match.encoding).name for match in charset_normalizer.from_path(path)]
    if not candidates:
        raise ImportFileError(
            f"{problem}, and its encoding could not be recognised. Save it as UTF-8, or name its encoding with "
            "the import option 'encoding' (e.g. gb18030 for GBK/GB2312, big5 for Big5)."
        )
    # Short Chinese files are ambiguous (GBK bytes also read as Korean cp949): among plausible encodings, a
    # Chinese one wins, GB18030 first.
    names = [ENCODING_SUPERSETS.get(name, name) for name in candidates]
    return next((name for name in CHINESE_ENCODINGS if name in names), names[0])


def _transcode(source: Path, target: Path, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    try:
        with source.open("rb") as raw, target.open("w", encoding="utf-8", newline="") as out:
            while piece := raw.read(1 << 20):
                out.write(decoder.decode(piece))
                offset += len(piece)
            out.write(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        _remove_upload(target)
        raise ImportFileError(
            f"The file is not valid {encoding} text (invalid byte at offset {offset + exc.start}). Save it as "
            "UTF-8, or name its encoding with the import option 'encoding' (e.g. gb18030, big5)."
        ) from None


def _is_workbook(path: Path, declared_format: str) -> bool:
    if declared_format == "xlsx":
        return True
    with path.open("rb") as raw:
        return not declared_format and raw.read(4) == ZIP_MAGIC


def _check_file(path: Path, declared_format: str) -> str:
    """Decide between JSONL, CSV and XLSX, and refuse files that are none of them."""
    if _is_workbook(path, declared_format):
        _check_workbook(path)
        return "xlsx"
    head = _head_lines(path)
    file_format = declared_format or ("jsonl" if head and head[0].lstrip().startswith("{") else "csv")
    if file_format == "jsonl":
        if not any(_is_json_object(line) for line in head):
            raise ImportFileError(
                f"The file does not look like JSONL: none of its first {SNIFF_LINES} lines is a JSON object "
                '(expected one object a line, e.g. {"text": "...", "label": "..."}).'
            )
        return file_format
    header = _csv_header(path)
    if "text" not in header:
        found = ", ".join(header[:10]) or "nothing"
        raise ImportFileError(
            f"The file is neither JSONL nor a CSV with a 'text' column (header found: {found}). "
            "Use JSONL (one JSON object a line) or CSV with a header row containing 'text'."
        )
    return file_format


def _open_text(path: Path) -> IO[str]:
    return path.open("r", encoding="utf-8-sig", newline="")


def _head_lines(path: Path) -> list[str]:
    lines: list[str] = []
    with _open_text(path) as handle:
        for line in handle:
            if line.strip():
                lines.append(line)
            if len(lines) >= SNIFF_LINES:
                break
    return lines


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _csv_header(path: Path) -> list[str]:
    with _open_text(path) as handle:
        try:
            row = next(csv.reader(handle), [])
        except csv.Error:
            return []
    return [name.strip().lower() for name in row]


def _count_records(path: Path, file_format: str) -> int:
    return sum(1 for _ in _parse_file(path, file_format))


def _open_workbook(path: Path) -> Any:
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zip, XML and key errors alike for a broken file
        raise ImportFileError(
            gettext(
                "The file is not a readable .xlsx workbook (%(name)s). Open it in a spreadsheet program and save it "
                "again as .xlsx, or export it as CSV."
            )
            % {"name": type(exc).__name__}
        ) from None


def _check_workbook(path: Path) -> None:
    workbook = _open_workbook(path)
    try:
        if not workbook.worksheets:
            raise ImportFileError(gettext("The workbook has no sheet."))
        first = next(workbook.worksheets[0].iter_rows(max_row=1, values_only=True), ())
        header = [_header_name(cell) for cell in first]
    finally:
        workbook.close()
    if "text" not in header:
        found = ", ".join(name for name in header[:10] if name) or "nothing"
        raise ImportFileError(
            gettext(
                "The first sheet's first row has no 'text' column (found: %(found)s). Put the column names in row 1: "
                "'text', optional 'label' and 'id'."
            )
            % {"found": found}
        )


def _header_name(cell: Any) -> str:
    return "" if cell is None else str(cell).strip().lower()


def _cell_value(cell: Any) -> Any:
    """A cell as JSON: dates as ISO text, whole numbers without a trailing .0."""
    if hasattr(cell, "isoformat"):
        return cell.isoformat()
    if isinstance(cell, float) and cell.is_integer():
        return int(cell)
    return cell


def _parse_xlsx(path: Path) -> Iterator[ParsedLine]:
    """The first sheet, row 1 the header; line numbers are the sheet's row numbers. Rows without any value
    (a sheet's formatted but empty tail) carry nothing and are passed over."""
    workbook = _open_workbook(path)
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [_header_name(cell) for cell in next(rows, ())]
        for number, row in enumerate(rows, start=2):
            cells = [_cell_value(cell) for cell in row]
            if all(cell in (None, "") for cell in cells):
                continue
            values = {
                key: cell
                for key, cell in zip(header, cells, strict=False)
                if key and (cell not in (None, "") or key == "text")
            }
            if isinstance(values.get("text"), int | float):
                values["text"] = str(values["text"])  # a number typed into the text column is still a text
            yield _from_mapping(number, values)
    finally:
        workbook.close()


def _parse_file(path: Path, file_format: str) -> Iterator[ParsedLine]:
    if file_format == "xlsx":
        yield from _parse_xlsx(path)
        return
    with _open_text(path) as handle:
        if file_format == "jsonl":
            yield from _parse_jsonl(handle)
        else:
            yield from _parse_csv(handle)


def _parse_jsonl(handle: IO[str]) -> Iterator[ParsedLine]:
    # splitlines-like iteration on "\n" only: a stray "\u2028" inside a JSON string is not a line break.
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            yield ParsedLine(line=number, reject_reason=gettext("Empty line."), reject_code="empty_line")
            continue
        try:
            value = loads_checked(line)
        except json.JSONDecodeError as exc:
            yield ParsedLine(
                line=number,
                reject_reason=gettext("Broken JSON (%(msg)s at column %(colno)s).")
                % {"msg": exc.msg, "colno": exc.colno},
                reject_code="broken_json",
            )
            continue
        except JSONTooDeep:
            yield ParsedLine(
                line=number,
                reject_reason=gettext("JSON nested deeper than %(value)s levels.") % {"value": max_json_depth()},
                reject_code="too_deep",
            )
            continue
        except UnstorableJSON as exc:
            yield ParsedLine(
                line=number, reject_reason=gettext("Invalid text: %(exc)s") % {"exc": exc}, reject_code="invalid_text"
            )
            continue
        except ValueError as exc:  # NaN/Infinity, or an integer of thousands of digits
            yield ParsedLine(
                line=number, reject_reason=gettext("Broken JSON (%(exc)s).") % {"exc": exc}, reject_code="broken_json"
            )
            continue
        if not isinstance(value, dict):
            yield ParsedLine(
                line=number,
                reject_reason=gettext("Not a JSON object (found %(name)s).") % {"name": type(value).__name__},
                reject_code="not_object",
            )
            continue
        yield _from_mapping(number, value)


def _parse_csv(handle: IO[str]) -> Iterator[ParsedLine]:
    reader = csv.reader(handle, strict=True)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except (StopIteration, csv.Error):
        return
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParsedLine(
                line=start, reject_reason=gettext("Broken CSV row (%(exc)s).") % {"exc": exc}, reject_code="broken_row"
            )
            if reader.line_num == previous_end:
                return  # the reader cannot move past this point
            previous_end = reader.line_num
            continue
        previous_end = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            yield ParsedLine(line=start, reject_reason=gettext("Empty row."), reject_code="empty_line")
        elif len(row) != len(header):
            yield ParsedLine(
                line=start,
                reject_reason=gettext("Broken CSV row: %(n_row)s fields, the header has %(n_header)s.")
                % {"n_row": len(row), "n_header": len(header)},
                reject_code="broken_row",
            )
        else:
            # Empty cells are not metadata; an empty text cell stays, so its reason is "Empty text".
            values = {key: cell for key, cell in zip(header, row, strict=True) if key and (cell or key == "text")}
            yield _from_mapping(start, values)


def _from_mapping(number: int, value: dict[str, Any]) -> ParsedLine:
    problem = document_problem(value)
    if problem is not None:
        return ParsedLine(
            line=number,
            reject_reason=gettext("Invalid text: %(value)s") % {"value": problem[0]},
            reject_code="invalid_text",
        )
    text = value.get("text")
    if text is None:
        return ParsedLine(line=number, reject_reason=gettext("No 'text' field."), reject_code="no_text")
    if not isinstance(text, str):
        return ParsedLine(
            line=number,
            reject_reason=gettext("'text' must be a string, not %(name)s.") % {"name": type(text).__name__},
            reject_code="field_type",
        )
    label = value.get("label")
    if label is not None and not isinstance(label, str):
        return ParsedLine(
            line=number,
            reject_reason=gettext("'label' must be a string, not %(name)s.") % {"name": type(label).__name__},
            reject_code="field_type",
        )
    external_id = next((value[key] for key in ID_KEYS if value.get(key) not in (None, "")), "")
    if isinstance(external_id, dict | list):
        return ParsedLine(
            line=number, reject_reason=gettext("'id' must be a string or a number."), reject_code="field_type"
        )
    external_id = str(external_id)
    if len(external_id) > 200:
        return ParsedLine(
            line=number, reject_reason=gettext("'id' is longer than 200 characters."), reject_code="field_type"
        )
    metadata = {key: item for key, item in value.items() if key not in {"text", "label", *ID_KEYS}}
    return ParsedLine(
        line=number, text=text, label=(label or "").strip() or None, external_id=external_id, metadata=metadata
    )


def resume_stalled_imports(*, older_than_seconds: int = 60) -> list[int]:
    """Queue again the pending jobs whose task never reached the broker (no task id), e.g. because Redis was
    down when the file was uploaded. The upload is on disk and the job is resumable, so nothing is lost."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    job_ids = list(
        ImportJob.objects.filter(status=ImportJob.Status.PENDING, task_id="", created_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    from sceneclf_site.api_errors import BrokerUnavailable

    sent = []
    for job_id in job_ids:
        try:
            enqueue_import(job_id)
        except BrokerUnavailable:
            break  # still down: the next sweep tries again
        sent.append(job_id)
    return sent
