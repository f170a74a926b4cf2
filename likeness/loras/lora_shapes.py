"""Does a LoRA's change fit the weight it names? The factors' shapes against the model weight's shape.

ComfyUI matches LoRA keys to model weights by name only. A LoRA of the right names and the wrong width (made
for a pruned or resized FLUX, or for another model that shares the block names) passes that match; ComfyUI
then logs a shape error when it patches and leaves the weight as it was. Counting names says "all keys
apply" while nothing does; counting the changes that fit says what really happens.

A change is described by its kind and factors as ComfyUI loads them (`comfy.weight_adapter`):
  lora  (up B: out×r, down A: r×in…, alpha, mid, dora, reshape)  → an out × in change
  loha  (w1a, w1b, alpha, w2a, w2b, t1, t2, dora)               → (w1a·w1b) ⊙ (w2a·w2b)
  lokr  (w1, w2, alpha, w1_a, w1_b, w2_a, w2_b, t2, dora)        → w1 ⊗ w2
  diff / set (w,)                                              → w itself
Kinds not listed (glora, oft, boft) are trusted by name.
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def target_shape(shape: Sequence[int], offset: Sequence[int] | None = None) -> tuple[int, ...]:
    """The shape a change must have: the weight's, or the slice (dim, start, length) of a fused weight."""
    shape = list(shape)
    if offset is not None:
        dim, _start, length = offset[:3]
        shape[dim] = length
    return tuple(int(s) for s in shape)


def fits(kind: str, weights: Sequence, shape: Sequence[int]) -> bool:
    """True when a change of this kind and these factors can be added to a weight of `shape`."""
    if not shape:
        return True
    rows, columns = int(shape[0]), math.prod(int(s) for s in shape[1:])
    if kind in ("diff", "set"):
        return tuple(weights[0].shape) == tuple(shape)
    if kind == "lora":
        up, down, _alpha, mid = weights[:4]
        reshape = weights[5] if len(weights) > 5 else None
        if reshape is not None:                  # ComfyUI pads the weight to this shape first: trusted
            return True
        if up.shape[0] != rows:
            return False
        if mid is not None:                      # LoCon with a mid kernel: the output side is what we can tell
            return True
        return up.shape[1] == down.shape[0] and math.prod(down.shape[1:]) == columns
    if kind == "loha":
        w1a, w1b, _alpha, w2a, w2b, t1 = weights[:6]
        if t1 is not None:
            return w1a.shape[0] == rows if w1a.dim() == 2 else True
        return (w1a.shape[0] == w2a.shape[0] == rows and w1b.shape[1] == w2b.shape[1]
                and math.prod(w1b.shape[1:]) == columns)
    if kind == "lokr":
        w1, w2, _alpha, w1_a, w1_b, w2_a, w2_b, t2 = weights[:8]
        one = tuple(w1.shape) if w1 is not None else (w1_a.shape[0], w1_b.shape[1])
        if t2 is not None:
            return True
        two = tuple(w2.shape) if w2 is not None else (w2_a.shape[0], *w2_b.shape[1:])
        return one[0] * two[0] == rows and one[1] * math.prod(two[1:]) == columns
    return True
