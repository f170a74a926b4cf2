"""On a ComfyUI older than the oldest one tested, the pack says so in one clear log line and loads no nodes.

The pack's entry point (`__init__.py`) is imported as ComfyUI imports it: with ComfyUI's `folder_paths` already
loaded and its `comfyui_version` module importable (here, a module of the version under test).
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import types
import uuid

import pytest

from harness.comfy_server import REPO


def import_pack(monkeypatch, version: str | None):
    """The pack's top module, imported as inside a ComfyUI of `version` (None: one without comfyui_version)."""
    monkeypatch.setitem(sys.modules, "folder_paths", types.ModuleType("folder_paths"))
    if version is None:
        monkeypatch.setitem(sys.modules, "comfyui_version", None)            # import fails, as on a very old one
    else:
        module = types.ModuleType("comfyui_version")
        module.__version__ = version
        monkeypatch.setitem(sys.modules, "comfyui_version", module)
    name = f"likeness_pack_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, pack)
    spec.loader.exec_module(pack)
    return pack


@pytest.mark.parametrize("version", ["0.3.60", "0.2.7", "0.3.74", None])
def test_an_older_comfyui_gets_one_clear_line_and_no_nodes(monkeypatch, caplog, version):
    monkeypatch.delenv("LIKENESS_SKIP_VERSION_CHECK", raising=False)
    with caplog.at_level(logging.ERROR, logger="likeness"):
        pack = import_pack(monkeypatch, version)
    lines = [r.getMessage() for r in caplog.records if r.name == "likeness"]
    assert len(lines) == 1
    shown = version or "unknown (no comfyui_version.py)"
    assert lines[0].startswith(f"Likeness needs ComfyUI 0.3.75 or newer, and this ComfyUI is {shown}")
    assert "Update ComfyUI" in lines[0] and "LIKENESS_SKIP_VERSION_CHECK=1" in lines[0]
    with pytest.raises(RuntimeError) as refused:             # ComfyUI logs this and loads the other packs
        asyncio.run(pack.comfy_entrypoint())
    assert str(refused.value) == lines[0]


@pytest.mark.parametrize("version", ["0.3.75", "0.33.0", "1.0.0"])
def test_a_tested_or_newer_comfyui_gets_no_warning(monkeypatch, caplog, version):
    monkeypatch.delenv("LIKENESS_SKIP_VERSION_CHECK", raising=False)
    with caplog.at_level(logging.ERROR, logger="likeness"):
        pack = import_pack(monkeypatch, version)
    assert [r for r in caplog.records if r.name == "likeness"] == []
    assert pack._comfyui_too_old() == ""


def test_the_user_can_choose_to_try_an_older_comfyui(monkeypatch, caplog):
    monkeypatch.setenv("LIKENESS_SKIP_VERSION_CHECK", "1")
    with caplog.at_level(logging.ERROR, logger="likeness"):
        pack = import_pack(monkeypatch, "0.3.60")
    assert [r for r in caplog.records if r.name == "likeness"] == []
    assert pack._comfyui_too_old() == ""
