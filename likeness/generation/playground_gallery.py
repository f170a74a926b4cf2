"""The playground's gallery: the seed journal, newest first, each image with its score, cost and files, and
the record of which prompts each user of the page queued (so a --multi-user ComfyUI shows each their own).

The runs of one user: `<user dir>/playground/<user>.jsonl`, append-only. A `queued` line is written when the
page plans a prompt (its settings, for Again and Vary); a `done` line when ComfyUI's history tells how it
ended: the journal entries its samplers gave (the `likeness_journal` they show), which of them were only
reused (ComfyUI's cache, or the Replicate sampler's store: nothing paid), and the images SaveImage wrote.
Scores: the journal entry's own (`JournalEntry.score`, set when a sampler scored the image); entries without
one simply have none.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..storage import append_json_line, read_json_lines
from .playground_prompt import nearest_aspect
from .seed_journal import JournalEntry, select_entries

log = logging.getLogger("likeness")
_SAFE_USER = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass
class Run:
    prompt_id: str
    time: float
    settings: dict[str, Any]
    status: str = "queued"                  # queued | success | error | interrupted | lost
    entries: list[str] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)   # SaveImage's {filename, subfolder, type}
    message: str = ""
    reused: list[str] = field(default_factory=list)              # entries this run did not pay for

    @property
    def finished(self) -> bool:
        return self.status != "queued"


class RunIndex:
    def __init__(self, user_dir: str | os.PathLike, user: str):
        name = user if _SAFE_USER.match(user) else hashlib.sha256(user.encode("utf-8")).hexdigest()[:32]
        self.path = Path(user_dir) / "playground" / f"{name}.jsonl"

    def queued(self, prompt_id: str, settings: dict[str, Any]) -> None:
        append_json_line(self.path, {"type": "queued", "prompt_id": prompt_id, "time": time.time(),
                                     "settings": settings})

    def done(self, run: Run) -> None:
        append_json_line(self.path, {"type": "done", "prompt_id": run.prompt_id, "status": run.status,
                                     "entries": run.entries, "images": run.images, "message": run.message,
                                     "reused": run.reused})

    def runs(self) -> dict[str, Run]:
        runs: dict[str, Run] = {}
        for record in read_json_lines(self.path):
            pid = str(record.get("prompt_id", ""))
            if record.get("type") == "queued":
                runs[pid] = Run(pid, float(record.get("time", 0)), record.get("settings") or {})
            elif record.get("type") == "done" and pid in runs:
                run = runs[pid]
                run.status, run.message = str(record.get("status", "lost")), str(record.get("message", ""))
                run.entries, run.images = list(record.get("entries") or []), list(record.get("images") or [])
                run.reused = list(record.get("reused") or [])
        return runs

def record_outcome(run: Run, history_item: dict[str, Any]) -> Run:
    """Fills `run` with how its prompt ended, from ComfyUI's history entry for it."""
    status_info = history_item.get("status") or {}
    run.status = "success" if status_info.get("status_str") == "success" else "error"
    cached: set[str] = set()
    for event, data in status_info.get("messages") or []:
        if event == "execution_interrupted":
            run.status, run.message = "interrupted", "Canceled."
        elif event == "execution_error" and isinstance(data, dict):
            run.message = f"{data.get('exception_type', 'Error')}: {data.get('exception_message', '')}".strip()
        elif event == "execution_cached" and isinstance(data, dict):
            cached |= {str(n) for n in data.get("nodes") or []}
    for node, ui in (history_item.get("outputs") or {}).items():
        for item in ui.get("likeness_journal") or []:
            if isinstance(item, dict) and item.get("id") and item["id"] not in run.entries:
                run.entries.append(str(item["id"]))
                if node in cached or item.get("reused"):
                    run.reused.append(str(item["id"]))
        for image in ui.get("images") or []:
            if isinstance(image, dict) and image.get("type") == "output" and image.get("filename"):
                run.images.append({k: str(image.get(k, "")) for k in ("filename", "subfolder", "type")})
    return run


def paid_by_run(run: Run, entries: dict[str, JournalEntry]) -> tuple[float, bool]:
    """(what this run paid, whether it only reused images it had paid for before)."""
    new = [entries[e] for e in run.entries if e not in run.reused and e in entries]
    return sum(float(e.extra.get("cost_usd") or 0.0) for e in new), bool(run.entries) and not new


def runs_by_entry(runs: dict[str, Run]) -> dict[str, Run]:
    """Each journal entry id → the page's run that made it (the newest, when a run reused an older image)."""
    return {entry_id: run for run in sorted(runs.values(), key=lambda r: r.time) for entry_id in run.entries}


def is_own(entry: JournalEntry, made_by: dict[str, Run], user: str | None) -> bool:
    """Whether `user` may see the entry: everyone may when `user` is None (one user); under --multi-user the
    user whose prompt made it, on the canvas or from the page."""
    return user is None or entry.user == user or entry.id in made_by


def gallery(entries: list[JournalEntry], runs: dict[str, Run], *, user: str | None, favourites: bool = False,
            min_score: float | None = None, limit: int = 60) -> list[dict[str, Any]]:
    """The gallery's items, newest first: only `user`'s own entries (None: everyone's, for a single user)."""
    made_by = runs_by_entry(runs)
    items = []
    for entry in select_entries(entries, favourites=favourites, min_score=min_score):
        run = made_by.get(entry.id)
        if not is_own(entry, made_by, user):
            continue
        items.append(gallery_item(entry, entry.score, run))
        if len(items) >= limit:
            break
    return items


def gallery_item(entry: JournalEntry, score: float | None, run: Run | None) -> dict[str, Any]:
    extra = entry.extra or {}
    stack = [{"lora": s.get("lora"), "strength": s.get("strength")} for s in entry.stack]
    if stack and run is not None and run.settings.get("personal") and entry.source == "replicate":
        stack[0]["lora"] = run.settings["personal"]    # the Replicate sampler names it by its version
    return {"id": entry.id, "time": entry.time, "prompt": entry.prompt, "seed": entry.seed, "steps": entry.steps,
            "guidance": entry.guidance, "width": entry.width, "height": entry.height, "source": entry.source,
            "stack": stack,
            "favourite": entry.favourite, "score": score, "cost_usd": extra.get("cost_usd"),
            "estimated_usd": extra.get("estimated_usd"), "model": extra.get("model", ""),
            "images": len(image_refs(entry, run)), "settings": settings_for(entry, run)}


def image_refs(entry: JournalEntry, run: Run | None) -> list[dict[str, str]]:
    """Where the entry's images are: the PNGs the run that made it saved (with the workflow and the entry in
    them), else the entry's own: the local sampler's PNG in the output folder, the Replicate sampler's store."""
    if run is not None and run.images and len(run.entries) == 1:
        return run.images
    return [_file_ref(p) for p in entry.images]


def _file_ref(path: str) -> dict[str, str]:
    """The local sampler names its PNG inside the output folder; the Replicate sampler's store is an absolute path."""
    if os.path.isabs(path):
        return {"path": path}
    subfolder, _, name = path.replace("\\", "/").rpartition("/")
    return {"filename": name, "subfolder": subfolder, "type": "output"}


def settings_for(entry: JournalEntry, run: Run | None) -> dict[str, Any] | None:
    """The page's settings that make this image again: the run's own, or read from a canvas entry (its
    LoRAs at their effective strengths, balance off); None when its personal LoRA is not a file here."""
    if run is not None and run.settings:
        return {**run.settings, "seed": entry.seed}
    if not entry.stack or entry.source not in ("local", "replicate"):
        return None
    personal, *styles = entry.stack
    if not str(personal.get("lora", "")).endswith(".safetensors"):
        return None
    return {"where": entry.source, "personal": personal["lora"], "personal_strength": personal.get("strength", 0.9),
            "styles": [{"lora": s.get("lora"), "strength": s.get("strength"), "on": True} for s in styles],
            "balance": "off", "prompt": entry.prompt, "trigger_word": (entry.trigger_words or "").split(",")[0].strip(),
            "seed": entry.seed, "steps": entry.steps, "guidance": entry.guidance,
            "aspect_ratio": nearest_aspect(entry.width, entry.height)}
