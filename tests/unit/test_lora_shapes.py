"""A LoRA change fits the weight it names only when its factors' shapes do (issue 17, item 4)."""
from __future__ import annotations

import torch

from likeness.loras.lora_shapes import fits, target_shape

W = (128, 640)                               # out × in of single_blocks.N.linear2 in a 128-wide FLUX


def lora(out, rank, inp, mid=None, reshape=None):
    return (torch.zeros(out, rank), torch.zeros(rank, inp), None, mid, None, reshape)


def test_a_low_rank_change_fits_only_its_own_width():
    assert fits("lora", lora(128, 4, 640), W)
    assert not fits("lora", lora(96, 4, 480), W)          # the right name, another width
    assert not fits("lora", lora(128, 4, 320), W)         # the output fits, the input does not
    assert not fits("lora", (torch.zeros(128, 4), torch.zeros(8, 640), None, None, None, None), W)   # ranks differ
    assert fits("lora", lora(128, 4, 640 * 9), (128, 640, 3, 3))          # a conv weight: in × kh × kw
    assert fits("lora", lora(96, 4, 480, reshape=[128, 640]), W)          # ComfyUI pads to `reshape` first


def test_a_slice_of_a_fused_weight_is_measured_on_the_slice():
    qkv = target_shape((384, 128), (0, 128, 128))          # to_k inside qkv: rows 128..255
    assert qkv == (128, 128)
    assert fits("lora", lora(128, 4, 128), qkv) and not fits("lora", lora(384, 4, 128), qkv)


def test_full_weights_hadamard_and_kronecker_changes():
    assert fits("diff", (torch.zeros(*W),), W) and not fits("diff", (torch.zeros(96, 480),), W)
    assert fits("set", (torch.zeros(*W),), W) and not fits("set", (torch.zeros(128),), W)
    loha = (torch.zeros(128, 4), torch.zeros(4, 640), None, torch.zeros(128, 4), torch.zeros(4, 640), None, None, None)
    assert fits("loha", loha, W)
    assert not fits("loha", (torch.zeros(96, 4), torch.zeros(4, 480), None, torch.zeros(96, 4), torch.zeros(4, 480),
                             None, None, None), W)
    lokr = (torch.zeros(8, 16), torch.zeros(16, 40), None, None, None, None, None, None, None)
    assert fits("lokr", lokr, W)                            # (8·16) × (16·40) = 128 × 640
    assert not fits("lokr", (torch.zeros(8, 16), torch.zeros(12, 30), None, None, None, None, None, None, None), W)
    assert fits("glora", (), W)                             # a kind we cannot measure is trusted by name
