"""`make bench` in quick mode: every benchmark runs to the end and its non-timing findings hold.

Speed is the benchmarks' business and is not asserted here; what is asserted is what a broken benchmark
would get wrong: the same pixels, no LoRA re-read, an A/A control that really ran (ComfyUI's cache once
turned it into a 0.02 s no-op), no paid call repeated, memory kept flat, output quality.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from harness.comfy_server import REPO


@pytest.fixture(scope="module")
def bench_output() -> str:
    run = subprocess.run([sys.executable, "-m", "tools.bench", "--quick"], cwd=REPO, env=dict(os.environ),
                         capture_output=True, text=True, timeout=900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    return output


def section(output: str, name: str) -> str:
    start = output.index(f"== {name}:")
    end = output.find("\n== ", start + 1)
    return output[start:] if end < 0 else output[start:end]


def test_lora_stack_benchmark_compares_like_with_like(bench_output):
    text = section(bench_output, "lora_stack")
    assert "warm-up: same pixels from both graphs: True" in text
    assert "LoRA files read from disk by the stack on those re-runs: 0 " in text
    assert "server log 'read LoRA' lines: 3 (one per file: 3)" in text
    found = re.search(r"A/A control \(core twin vs core\), wall: twin ([\d., ]+) s; core ([\d., ]+) s", text)
    twin, core = ([float(v) for v in group.split(",")] for group in found.groups())
    assert min(twin) > 0.3 * max(core)                 # the twin sampled; a cache hit takes milliseconds
    assert re.search(r"LoRA loading nodes .*: ours [\d.]+ ms, core [\d.]+ ms", text)


def test_captioning_benchmark_pays_nothing_on_the_second_run(bench_output):
    text = section(bench_output, "captioning")
    assert "second run: 0 API calls" in text
    found = re.search(r"(\d+)/(\d+) captions restored from the cache", text)
    assert found and found.group(1) == found.group(2)


def test_dataset_prep_benchmark_output_matches_the_naive_loop(bench_output):
    found = re.search(r"PSNR mean ([\d.]+) dB, min ([\d.]+) dB; SSIM mean [\d.]+, min ([\d.]+)",
                      section(bench_output, "dataset_prep"))
    assert found and float(found.group(2)) > 35 and float(found.group(3)) > 0.95


def test_training_upload_benchmark_streams_and_polls_sparingly(bench_output):
    text = section(bench_output, "training_upload")
    assert text.count("[OK: < 30 MB]") == 2
    pack = re.search(r"pack \([\d.]+ s interval\): (\d+) HTTP requests", text)
    baseline = re.search(r"baseline \(SDK's [\d.]+ s\): (\d+) HTTP requests", text)
    assert pack and baseline and int(pack.group(1)) * 5 < int(baseline.group(1))
