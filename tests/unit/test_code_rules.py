"""The layout and style rules of the pack, checked on the source itself."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST_ONLY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "server", "nodes",
                     "node_helpers", "latent_preview", "execution"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_library_never_imports_comfyui():
    offenders = {str(p.relative_to(REPO)): sorted(_imports(p) & HOST_ONLY_MODULES)
                 for p in (REPO / "likeness").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nodes_import_the_library_relatively():
    # `nodes` is also the name of ComfyUI's own nodes.py, and the pack is imported as comfyui-likeness
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "nodes").rglob("*.py")
                 if {"likeness", "nodes"} & _imports(p)]
    assert offenders == []


def test_entry_point_exports_only_v3():
    tree = ast.parse((REPO / "__init__.py").read_text())
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    assert "NODE_CLASS_MAPPINGS" not in assigned  # it would make ComfyUI skip comfy_entrypoint
    assert "WEB_DIRECTORY" in assigned
    assert "comfy_entrypoint" in (REPO / "__init__.py").read_text()


def test_nodes_use_the_versioned_v3_api():
    latest = [str(p.relative_to(REPO)) for p in (REPO / "nodes").rglob("*.py")
              if "comfy_api.latest" in p.read_text(encoding="utf-8")]
    assert latest == []


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_requirements_match_pyproject():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert sorted(declared) == sorted(listed)


# The library's rooms, lowest first: a module may import its own room and the rooms before it, never after
# (shared/style.md: imports point down the pipeline). The common core (errors, storage, progress, photo_files) is
# below all.
ROOMS = ["money", "cloud", "identity", "dataset", "captions", "loras", "training", "generation"]


def _rooms_imported(path: Path) -> set[str]:
    """The rooms (or core modules) a library module imports, from its relative imports."""
    in_room = path.parent != REPO / "likeness"
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            first = (node.module or "").split(".")[0]
            rooms.add(path.parent.name if in_room and node.level == 1 else first)
    return rooms


def test_library_rooms_import_downward_only():
    upward = {}
    for path in (REPO / "likeness").rglob("*.py"):
        parts = path.relative_to(REPO / "likeness").parts
        own = parts[0] if len(parts) > 1 else None
        allowed = set(ROOMS[:ROOMS.index(own) + 1]) if own else set()
        bad = {r for r in _rooms_imported(path) if r in ROOMS and r not in allowed}
        if bad:
            upward[str(path.relative_to(REPO))] = sorted(bad)
    assert upward == {}, f"imports that point up the pipeline ({' < '.join(ROOMS)}): {upward}"


def test_every_room_is_known():
    rooms = {p.name for p in (REPO / "likeness").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert rooms <= set(ROOMS), f"add {sorted(rooms - set(ROOMS))} to ROOMS in its place in the pipeline"
