"""dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) run in torch: the same network and
the same weights, read from dlib's own file, on torch's CPU kernels instead of dlib's.

dlib-bin's wheels are built without BLAS, so dlib's own descriptor costs about 75 ms a face on one core and holds
the GIL. torch's CPU convolutions (oneDNN) run the same 29 layers several times faster, release the GIL and take a
batch of faces at once. Only the network changes: the 150×150 chip still comes from `dlib.get_face_chip`, so
the input is dlib's to the byte, and `DlibResnet.matches_dlib` compares the two on a chip before it is trusted.

The network, as dlib's dnn_face_recognition_ex.cpp defines it (`anet_type`, the path without jitter):

    input 150×150 RGB, (pixel − channel mean) / 256
    con 32 7×7 /2 → affine → relu → max_pool 3×3 /2
    level4: 3 × res(32)    level3: res_down(64), 3 × res(64)    level2: res_down(128), 2 × res(128)
    level1: res_down(256), 2 × res(256)    level0: res_down(256)
    avg_pool_everything → fc_no_bias 128

    res(N)      = relu(x + affine(con3×3(relu(affine(con3×3(x))))))
    res_down(N) = relu(avg_pool2×2/2(x) ⊕ affine(con3×3(relu(affine(con3×3 /2 (x))))))

dlib's strided convolutions and pools have no padding, and its `add_prev` adds two tensors of different shapes
as if the smaller were zero-padded at the end of each axis (⊕): a down block adds 32 input channels into 64,
and at level1 a 3×3 result into a 4×4 one. `affine` is dlib's inference form of batch norm (the file may hold
the batch-norm statistics instead; they are folded the way dlib's `affine_(const bn_&)` does).

The file is read with dlib's serialization rules (dlib/serialize.h, dnn/core.h, layers.h, input.h, loss.h):
integers as a length byte (0x80: negative) and little-endian bytes, floats as an integer mantissa and power-of-two
exponent, bools as '0'/'1', tensors as a version, four sizes and little-endian float32 values; every layer of
the expected network is checked by name and shape as it is read, so another file is refused, not misread.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("likeness")

CHIP_SIZE = 150              # dlib's chip side for this network (get_face_chip's default size)
CHIP_PADDING = 0.25          # ... and padding, as compute_face_descriptor uses them
PARITY_TOLERANCE = 1e-3      # largest |Δ| per dimension allowed against dlib's own descriptor (seen: ~5e-7)


class ModelFileError(ValueError):
    """The file is not dlib's face recognition ResNet as this reader knows it."""


def network_if_it_matches(path: str | Path, dlib_model: Any) -> tuple[DlibResnet | None, str]:
    """The torch network for the model file at `path` when torch imports and the network gives `dlib_model`'s
    descriptor for a test chip (within PARITY_TOLERANCE), else None; and a description of what computes the
    embeddings, for the report."""
    own = "dlib's face ResNet in dlib"
    try:
        import torch  # noqa: F401 - only whether it imports
    except ImportError:
        return None, own + " (torch is not installed)"
    chip = parity_chip()
    try:
        network = DlibResnet(read_dlib_resnet(path))
        ours = network.embed(chip[None])[0]
    except (ModelFileError, OSError, RuntimeError, ValueError) as exc:
        log.warning("likeness: dlib's face ResNet cannot run in torch (%s): dlib runs it", exc)
        return None, own + f" (not in torch: {exc})"
    gap = float(np.abs(ours - np.asarray(dlib_model.compute_face_descriptor(chip), np.float32)).max())
    if not gap < PARITY_TOLERANCE:
        log.warning("likeness: dlib's face ResNet in torch is %.2g away from dlib's own on the test chip: "
                    "dlib runs it", gap)
        return None, own + f" (torch was {gap:.2g} away from it)"
    return network, f"dlib's face ResNet in torch, within {gap:.0e} of dlib's own"


def parity_chip() -> np.ndarray:
    """A fixed 150×150 RGB chip for the parity check: smooth shading with grain, so every filter responds."""
    rng = np.random.default_rng(150)
    y, x = np.mgrid[0:CHIP_SIZE, 0:CHIP_SIZE].astype(np.float32) / CHIP_SIZE
    shade = 60 + 120 * np.exp(-((x - 0.5) ** 2 + (y - 0.45) ** 2) * 6)
    pixels = shade[..., None] * np.array([1.0, 0.85, 0.75], np.float32) + rng.normal(0, 25, (CHIP_SIZE, CHIP_SIZE, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


# --- dlib's serialization --------------------------------------------------------------------------------

class _Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ModelFileError("the file ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        head = self.take(1)[0]
        size, negative = head & 0x0F, head & 0x80
        if size > 8 or head & 0x70:
            raise ModelFileError(f"bad integer header {head:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self.take(size), "little")
        return -value if negative else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        specials = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        return specials[exponent] if exponent in specials else float(mantissa) * 2.0 ** exponent

    def bool(self) -> bool:
        value = bytes(self.take(1))
        if value not in (b"0", b"1"):
            raise ModelFileError(f"bad bool {value!r} at byte {self.pos - 1}")
        return value == b"1"

    def str(self) -> str:
        return bytes(self.take(self.int())).decode("latin-1")

    def expect(self, what: str, *allowed: str) -> str:
        found = self.str()
        if found not in allowed:
            raise ModelFileError(f"expected {what} ({' or '.join(allowed)}), found {found[:40]!r}")
        return found

    def version(self, what: str, *allowed: int) -> int:
        found = self.int()
        if found not in allowed:
            raise ModelFileError(f"unexpected {what} version {found}")
        return found

    def tensor(self) -> np.ndarray:
        version = self.version("tensor", 1, 2)
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        if version == 2:
            values = np.frombuffer(self.take(4 * count), "<f4").astype(np.float32)
        else:
            values = np.array([self.float() for _ in range(count)], np.float32)
        return values.reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.version("alias_tensor", 1)
        return tuple(self.int() for _ in range(4))


# --- the network's layers, as dlib nests them --------------------------------------------------------------

@dataclass
class _Conv:
    weight: np.ndarray        # (out, in, kh, kw)
    bias: np.ndarray          # (out,)
    stride: int
    padding: int


@dataclass
class _Affine:
    gamma: np.ndarray
    beta: np.ndarray


def _architecture() -> list[tuple]:
    """The network from the output inward, as dlib serialises its wrappers: ("add", layer) for a layer with
    details, ("tag",) for a tag or skip (nothing stored). A block's convolutions carry (filters, stride)."""
    def block(n: int, stride: int) -> list[tuple]:
        return [("add", "affine"), ("add", "con", n, 1), ("add", "relu"), ("add", "affine"), ("add", "con", n, stride)]

    def res(n: int) -> list[tuple]:
        return [("add", "relu"), ("add", "add_prev")] + block(n, 1) + [("tag",)]

    def res_down(n: int) -> list[tuple]:
        return [("add", "relu"), ("add", "add_prev"), ("add", "avg_pool", 2, 2), ("tag",), ("tag",)] \
            + block(n, 2) + [("tag",)]

    levels = (res_down(256) + res(256) + res(256) + res_down(256) + res(128) + res(128) + res_down(128)
              + res(64) * 3 + res_down(64) + res(32) * 3)
    return [("add", "fc", 128), ("add", "avg_pool", 0, 1)] + levels + [
        ("add", "max_pool", 3, 2), ("add", "relu"), ("add", "affine"), ("input", "con", 32, 2, 7)]


@dataclass
class DlibResnetWeights:
    channel_means: tuple[float, float, float]      # the input layer's avg_red, avg_green, avg_blue
    stem: tuple[_Conv, _Affine]
    blocks: list[tuple[bool, _Conv, _Affine, _Conv, _Affine]]   # (down, con1, affine1, con2, affine2), input first
    fc: np.ndarray                                 # (256, 128)


def read_dlib_resnet(path: str | Path) -> DlibResnetWeights:
    """The weights of dlib's face recognition ResNet from its .dat file (ModelFileError for anything else)."""
    reader = _Reader(Path(path).read_bytes())
    reader.version("add_loss_layer", 1)
    if reader.expect("the metric loss", "loss_metric_", "loss_metric_2") == "loss_metric_2":
        reader.float(), reader.float()                 # margin, distance threshold: training only
    plan = _architecture()
    versions = [reader.version(step[0], *{"add": (1, 2), "tag": (1,), "input": (2, 3)}[step[0]])
                for step in plan]                      # the wrappers' versions come first, outside in
    reader.expect("the input layer", "input_rgb_image_sized")
    means = (reader.float(), reader.float(), reader.float())
    if (reader.int(), reader.int()) != (CHIP_SIZE, CHIP_SIZE):
        raise ModelFileError(f"the input layer does not take {CHIP_SIZE}×{CHIP_SIZE} chips")
    layers: list = []
    for step, version in reversed(list(zip(plan, versions))):   # then each layer's details, inside out
        if step[0] == "tag":
            continue
        layers.append(_read_layer(reader, step))
        _skip_layer_state(reader, step[0], version)
    if reader.pos != len(reader.data):
        raise ModelFileError(f"{len(reader.data) - reader.pos} bytes left after the network")
    return _assemble(means, [layer for layer in layers if layer is not None])


def _read_layer(reader: _Reader, step: tuple):
    kind = step[1]
    if kind == "con":
        return _read_conv(reader, *step[2:4], kernel=step[4] if len(step) > 4 else 3)
    if kind == "affine":
        return _read_affine(reader)
    if kind == "relu":
        reader.expect("relu", "relu_")
        return None
    if kind == "add_prev":
        reader.expect("add_prev", "add_prev_")
        return None
    if kind in ("avg_pool", "max_pool"):
        reader.expect(kind, f"{kind}_", f"{kind}_2")
        size, stride = step[2], step[3]
        found = [reader.int() for _ in range(6)]       # nr, nc, stride_y, stride_x, padding_y, padding_x
        if found != [size, size, stride, stride, 0, 0]:
            raise ModelFileError(f"{kind} is {found}, expected {size}×{size} stride {stride} without padding")
        return ("avg_pool" if kind == "avg_pool" else None)
    if kind == "fc":
        reader.expect("fc_no_bias", "fc_2", "fc_3")
        outputs, inputs = reader.int(), reader.int()
        params = reader.tensor()
        reader.alias(), reader.alias()
        if reader.int() != 1:                          # FC_NO_BIAS
            raise ModelFileError("the last layer has a bias; dlib's face network has none")
        for _ in range(4):
            reader.float()                             # learning-rate and weight-decay multipliers
        if params.size != inputs * outputs or (outputs, inputs) != (step[2], 256):
            raise ModelFileError(f"the fc layer maps {inputs} → {outputs}, expected 256 → {step[2]}")
        return params.reshape(inputs, outputs)
    raise AssertionError(kind)


def _read_conv(reader: _Reader, filters: int, stride: int, kernel: int) -> _Conv:
    version = reader.expect("con", "con_4", "con_5", "con_6")
    params = reader.tensor().reshape(-1)
    num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(7))
    weight_shape, _ = reader.alias(), reader.alias()
    for _ in range(4):
        reader.float()                                 # learning-rate and weight-decay multipliers
    use_bias = reader.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and reader.bool():
        raise ModelFileError("a convolution with a fused relu; dlib's face network has none")
    padding = 0 if stride != 1 else kernel // 2
    if (num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x) != (filters, kernel, kernel, stride, stride,
                                                                   padding, padding):
        raise ModelFileError(f"a convolution is {num_filters} {nr}×{nc} /{stride_y} pad {pad_y}, expected "
                             f"{filters} {kernel}×{kernel} /{stride} pad {padding}")
    count = int(np.prod(weight_shape))
    if not use_bias or weight_shape[0] != filters or params.size != count + filters:
        raise ModelFileError(f"a convolution's parameters do not fit {weight_shape}")
    return _Conv(params[:count].reshape(weight_shape), params[count:].copy(), stride, padding)


def _read_affine(reader: _Reader) -> _Affine:
    version = reader.expect("affine", "affine_", "affine_2", "bn_con2")
    params = reader.tensor().reshape(-1)
    gamma_shape, _ = reader.alias(), reader.alias()
    channels = int(np.prod(gamma_shape))
    gamma, beta = params[:channels], params[channels:2 * channels]
    if version == "bn_con2":                           # batch norm as stored for training: fold its statistics
        reader.tensor(), reader.tensor()               # means, invstds of the last batch
        running_means, running_variances = reader.tensor().reshape(-1), reader.tensor().reshape(-1)
        reader.int(), reader.int()                     # num_updates, running_stats_window_size
        for _ in range(4):
            reader.float()
        eps = reader.float()
        gamma = gamma / np.sqrt(running_variances + eps)
        beta = beta - gamma * running_means
    else:
        if reader.int() != 0:                          # CONV_MODE: one gamma and beta per channel
            raise ModelFileError("an affine layer is not per channel")
        if version == "affine_2" and reader.bool():
            raise ModelFileError("a disabled affine layer; dlib's face network has none")
    if params.size != 2 * channels:
        raise ModelFileError("an affine layer's parameters do not fit its channels")
    return _Affine(gamma.astype(np.float32), beta.astype(np.float32))


def _skip_layer_state(reader: _Reader, kind: str, version: int) -> None:
    """What add_layer stores after a layer's details: training state, not needed to run the network."""
    for _ in range(3):
        reader.bool()                                  # setup called, gradient stale, output disabled
    reader.tensor(), reader.tensor()                   # x_grad, cached_output
    if kind == "input":
        reader.tensor()                                # grad_final
        if version >= 3:
            reader.int()                               # sample expansion factor
    elif version == 2:
        reader.tensor()                                # params_grad


def _assemble(means, layers: list) -> DlibResnetWeights:
    stem = (layers[0], layers[1])
    rest = layers[2:]
    blocks, i = [], 0
    while i < len(rest) and isinstance(rest[i], _Conv):
        con1, affine1, con2, affine2 = rest[i:i + 4]
        down = i + 4 < len(rest) and isinstance(rest[i + 4], str)
        blocks.append((down, con1, affine1, con2, affine2))
        i += 5 if down else 4
    if len(blocks) != 14 or i != len(rest) - 2 or not isinstance(rest[-1], np.ndarray):
        raise ModelFileError("the layers do not form dlib's face recognition ResNet")
    return DlibResnetWeights(means, stem, blocks, rest[-1])


# --- the network in torch -----------------------------------------------------------------------------------

class DlibResnet:
    """dlib's face recognition ResNet in torch (CPU, float32): `embed(chips)` → (n, 128) descriptors, the numbers
    dlib's `compute_face_descriptor` gives for the same 150×150 chips (to float rounding)."""

    def __init__(self, weights: DlibResnetWeights):
        import torch

        self._torch = torch
        tensor = torch.from_numpy
        self._means = torch.tensor(weights.channel_means, dtype=torch.float32).view(1, 3, 1, 1)
        self._stem = self._folded(*weights.stem)
        self._blocks = [(down, self._folded(c1, a1), self._folded(c2, a2))
                        for down, c1, a1, c2, a2 in weights.blocks]
        self._fc = tensor(np.ascontiguousarray(weights.fc))

    def _folded(self, conv: _Conv, affine: _Affine) -> tuple:
        """The convolution with the affine layer after it folded in: gamma·(w∗x + b) + beta."""
        gamma = affine.gamma.astype(np.float64)
        weight = (conv.weight.astype(np.float64) * gamma[:, None, None, None]).astype(np.float32)
        bias = (conv.bias.astype(np.float64) * gamma + affine.beta).astype(np.float32)
        return self._torch.from_numpy(weight), self._torch.from_numpy(bias), conv.stride, conv.padding

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors of `chips`, an (n, 150, 150, 3) uint8 RGB array of dlib face chips."""
        torch = self._torch
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"chips of shape {chips.shape}, expected (n, {CHIP_SIZE}, {CHIP_SIZE}, 3)")
        with _RUNNING, _one_thread(torch), torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
            x = (x - self._means) / 256.0
            x = torch.relu(self._conv(x, self._stem))
            x = torch.nn.functional.max_pool2d(x, 3, 2)
            for down, first, second in self._blocks:
                y = self._conv(torch.relu(self._conv(x, first)), second)
                x = torch.relu(_add_zero_padded(torch.nn.functional.avg_pool2d(x, 2, 2), y) if down else x + y)
            x = x.mean(dim=(2, 3))
            return (x @ self._fc).numpy().astype(np.float32)

    def _conv(self, x, layer: tuple):
        weight, bias, stride, padding = layer
        return self._torch.nn.functional.conv2d(x, weight, bias, stride=stride, padding=padding)


_RUNNING = threading.Lock()


@contextlib.contextmanager
def _one_thread(torch) -> Iterator[None]:
    """Run torch's CPU kernels on this thread alone, then give torch back its thread count.

    On a shared CPU, torch's OpenMP threads wait for each other at every layer, and when another process (or
    the loader's own workers) holds a core they wait a whole time slice: 30 faces took 0.6–1.4 s on two busy
    cores instead of 0.16 s on one. One thread costs about 5 ms a face in a batch, which is plenty here. The
    count is per thread for threads torch has already set up (ComfyUI's), so nothing else changes; the lock
    around the network keeps two callers from mixing their counts up.
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _add_zero_padded(a, b):
    """a + b as dlib's add_prev adds tensors of different shapes: each zero-padded at the end of every axis."""
    if a.shape == b.shape:
        return a + b
    import torch

    shape = [max(p, q) for p, q in zip(a.shape, b.shape)]
    out = torch.zeros(shape, dtype=a.dtype)
    out[:, :a.shape[1], :a.shape[2], :a.shape[3]] += a
    out[:, :b.shape[1], :b.shape[2], :b.shape[3]] += b
    return out
