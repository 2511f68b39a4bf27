"""`manage.py backbones install` prints the engine's ProgressEvents: fraction, ETA and step of the install."""

from __future__ import annotations

import re
from io import StringIO

from django.core.management import call_command

from modeling.engine.progress import ProgressEvent
from modeling.management.commands.backbones import format_event
from tests.engine.test_packs import e5_files, fake_registry  # noqa: F401  (fixtures: a tiny fake pack)


def test_install_prints_fraction_and_eta_of_every_step(fake_registry, monkeypatch, settings, tmp_path):  # noqa: F811
    from modeling.engine.backbones import packs

    monkeypatch.setattr("modeling.management.commands.backbones.PACKS", packs.PACKS)
    monkeypatch.setattr(packs, "HASH_CHUNK", 256)
    settings.MODEL_ROOT = str(tmp_path / "models")
    out = StringIO()
    call_command("backbones", "install", "tiny-e5", stdout=out)
    lines = out.getvalue().splitlines()
    steps = [line for line in lines if line.startswith("  [pack]")]
    assert steps and all(re.match(r"  \[pack\] +\d+% ", line) for line in steps)
    percents = [int(re.search(r"(\d+)%", line).group(1)) for line in steps]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any("left) tiny-e5: verifying sha256" in line for line in steps)
    assert any("tiny-e5: hashing the files" in line for line in steps)
    assert lines[-1].startswith("tiny-e5 ready, fingerprint ")
    assert (tmp_path / "models" / "tiny-e5" / "pack.json").is_file()

    again = StringIO()
    call_command("backbones", "install", "tiny-e5", stdout=again)
    assert "[pack] 100% tiny-e5: already installed and verified" in again.getvalue()


def test_event_format_names_stage_fraction_and_time_left():
    event = ProgressEvent("pack", 0.42, 65.4, "e5: verifying sha256 of e5-small-q4.bin")
    assert format_event(event) == "[pack]  42% (about 1 min 5 s left) e5: verifying sha256 of e5-small-q4.bin"
    assert format_event(ProgressEvent("pack", 0.0, None, "x: start")) == "[pack]   0% x: start"
    assert format_event(ProgressEvent("pack", 1.0, 0.0, "x: done")) == "[pack] 100% x: done"
