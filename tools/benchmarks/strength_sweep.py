"""Strength sweep: a 16-cell sweep on Replicate (personal 0.7–1.0 × style 0.0–0.3, 4 × 4) against the fake
Replicate server with a fixed latency of 4 s per prediction, through the pack's own run
(`likeness.generation.sweep_runs.run_sweep`: the Replicate sampler's generate(), its result cache, likeness
scoring of every image with dlib against real photos).

Baseline, in the same command: the same sweep with one prediction in flight (one after another). Targets: at least
3.5× faster with 4 in flight, and 0 predictions when the same sweep runs a second time. The fake's images are real
faces that lose likeness as the style strength rises, so both runs must also agree on every score and on the
recommendation. The fake runs in a process of its own, as Replicate would: its image making and the pack's
likeness scoring do not take turns on one interpreter lock.

Why 4 s: Replicate gives FLUX.1 [dev] with go_fast at 1024² and 28 steps as 3.03 s end to end (P90 3.90 s;
reference lora-and-performance §4.2), so about 3.8 s at the seed's 35 steps, before the LoRA is loaded. Scoring
an image (dlib, about 0.25 s of CPU here, holding the interpreter lock) is the part that cannot overlap; at a
shorter latency it weighs more (`LIKENESS_BENCH_SWEEP_LATENCY` overrides the 4 s to see it).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from tools.benchmarks import environment

NAME = "strength_sweep"
DESCRIPTION = ("16-cell sweep on the fake Replicate at a fixed latency per prediction: 4 in flight vs one after "
               "another; predictions on a second run")
BENCH_TOKEN = "r8_" "LIKENESSBENCHtoken00000000000000000"
CREATE = r"^/v1/models/black-forest-labs/flux-dev-lora/predictions$"


def run(args) -> list[str]:
    personal_steps, latency = (2, 0.5) if args.quick else (4, float(os.environ.get("LIKENESS_BENCH_SWEEP_LATENCY", 4)))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from tools import real_faces

    from likeness.generation.strength_sweep import LoraRef, sweep_grid
    from likeness.generation.sweep_runs import REPLICATE_IN_FLIGHT, SweepRequest, run_sweep
    from likeness.identity import load_backend, reference_from_photos

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_fake, args=(theirs, latency), daemon=True)
    server.start()
    env = ours.recv()

    def created() -> int:
        ours.send("count")
        return ours.recv()

    try:
        with environment({"REPLICATE_API_TOKEN": BENCH_TOKEN, **env, "LIKENESS_MONTHLY_BUDGET_USD": None}):
            backend = load_backend("dlib")
            photos = real_faces.faces_dir()
            reference = reference_from_photos([photos / "obama2.jpg", photos / "obama3.jpg"], backend)
            request = SweepRequest(LoraRef("likeness-bench/pelarbues"),
                                   LoraRef("https://civitai.com/api/download/models/99001"),
                                   sweep_grid((0.7, 1.0, personal_steps), (0.0, 0.3, 4)), ("a portrait of pelarbues",),
                                   (1234,), "replicate", trigger_words="pelarbues")
            cells = len(request.grid.cells())
            with tempfile.TemporaryDirectory(prefix="likeness-bench-sweep-") as tmp:
                root = Path(tmp)
                one, sequential = _timed(lambda: run_sweep(request, user_dir=root / "one", reference=reference,
                                                           backend=backend, in_flight=1))
                made_one = created()
                four, concurrent = _timed(lambda: run_sweep(request, user_dir=root / "four", reference=reference,
                                                            backend=backend, in_flight=REPLICATE_IN_FLIGHT))
                made_four = created() - made_one
                again, _ = _timed(lambda: run_sweep(request, user_dir=root / "four", reference=reference,
                                                    backend=backend, in_flight=REPLICATE_IN_FLIGHT))
                made_again = created() - made_one - made_four
    finally:
        ours.send("stop")
        server.join(timeout=30)
    ratio = sequential / concurrent
    same = one.likeness_grid() == four.likeness_grid() == again.likeness_grid()
    rec = four.recommendation
    return [
        f"{cells} cells, fake latency {latency:.1f} s per prediction; predictions created: one after another "
        f"{made_one}, {REPLICATE_IN_FLIGHT} in flight {made_four} (one per cell: {cells})",
        f"one after another (1 in flight): {sequential:6.2f} s",
        f"pack, {REPLICATE_IN_FLIGHT} in flight:              {concurrent:6.2f} s",
        f"speed-up: {ratio:.2f}x (target >= 3.5x) {'OK' if ratio >= 3.5 else 'BELOW TARGET'}",
        f"second run: {made_again} predictions (target 0) {'OK' if made_again == 0 else 'FAILED'}; "
        f"{again.reused}/{cells} images reused; same scores in all three runs: {same}",
        f"scored cells: {sum(c.likeness is not None for c in four.cells)}/{cells}; likeness at style 0 → 0.3: "
        + "; ".join(f"{row[0]:.0f} → {row[-1]:.0f}" for row in four.likeness_grid()),
        f"recommendation: {rec.text}",
    ]


def serve_fake(conn, latency: float) -> None:
    """The fake Replicate in this (spawned) process: sends its environment, answers "count", ends on "stop"."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from fakes.replicate import FakeReplicate
    from tools import real_faces

    fake = FakeReplicate(token=BENCH_TOKEN).start()
    fake.prediction_plan = replace(fake.prediction_plan, latency_s=latency)
    fake.use_images(lambda model, version, inputs, i: real_faces.styled_portrait(inputs, i))
    conn.send(fake.env)
    try:
        while (message := conn.recv()) != "stop":
            conn.send(fake.count("POST", CREATE) if message == "count" else None)
    finally:
        fake.stop()


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
