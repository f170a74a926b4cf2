"""Balancing stacked LoRA strengths: the seed's anchor rule, proportional, and the effect mode's maths."""
from __future__ import annotations

import math

import pytest
import torch

from likeness.errors import InputError
from likeness.loras.strength_balance import (LowRankDelta, StackRow, balance_strengths, delta_inner,
                                             describe_total, frobenius_norm, parse_rows, stack_inner)


def rows(*strengths, off=()):
    return [StackRow(f"l{i}.safetensors", s, i not in off) for i, s in enumerate(strengths)]


def test_anchor_keeps_personal_and_fills_the_target_within_the_clamp():
    b = balance_strengths(rows(0.9, 0.5), "anchor", target_total=1.2)
    assert b.strengths == pytest.approx([0.9, 0.25])          # 0.3 asked, clamped to the 0.25 ceiling
    b = balance_strengths(rows(0.9, 0.5, 0.5), "anchor", target_total=1.2)
    assert b.strengths == pytest.approx([0.9, 0.15, 0.15])    # 0.15 each: the total reaches 1.2 exactly
    assert b.total == pytest.approx(1.2)


def test_anchor_keeps_a_typed_strength_inside_the_clamp_range():
    """The seed picks 0.15–0.25 "adjusting based on how I want to balance concepts": a typed 0.2 stays 0.2,
    only a value outside the range moves; the total shows how far from the target that leaves the stack
    (issue 17, item 2)."""
    b = balance_strengths(rows(0.9, 0.2), "anchor", target_total=1.2)
    assert b.strengths == pytest.approx([0.9, 0.2]) and b.total == pytest.approx(1.1)
    assert describe_total(b.total, 1.2) == "0.10 below the target 1.2"
    assert balance_strengths(rows(0.9, 0.15), "anchor").strengths == pytest.approx([0.9, 0.15])   # the bounds
    assert balance_strengths(rows(0.9, 0.25), "anchor").strengths == pytest.approx([0.9, 0.25])   # are inside
    assert balance_strengths(rows(0.9, 1.0), "anchor").strengths == pytest.approx([0.9, 0.25])    # outside
    assert balance_strengths(rows(0.9, 0.05), "anchor").strengths == pytest.approx([0.9, 0.15])   # below: floor
    assert balance_strengths(rows(0.9, -0.2), "anchor").strengths == pytest.approx([0.9, -0.2])   # |s| inside


def test_anchor_rows_typed_outside_share_what_the_kept_rows_leave():
    b = balance_strengths(rows(0.9, 0.2, 1.0), "anchor", target_total=1.3)
    assert b.strengths == pytest.approx([0.9, 0.2, 0.2])                 # 1.3 − 0.9 − 0.2 = 0.2 for row 3
    assert b.total == pytest.approx(1.3) and describe_total(b.total, 1.3) == "on the target 1.3"
    b = balance_strengths(rows(0.9, 2.0, 1.0), "anchor", target_total=1.3, clamp=(0.0, 0.9))
    assert b.strengths == pytest.approx([0.9, 0.4 * 2 / 3, 0.4 / 3])      # in their typed ratio
    b = balance_strengths(rows(0.9, 0.05, 1.0), "anchor", target_total=1.2)
    assert b.strengths == pytest.approx([0.9, 0.15, 0.15])               # the raised row counts as taken
    b = balance_strengths(rows(0.9, 0.25, 0.25, 0.6), "anchor", target_total=1.2)
    assert b.strengths == pytest.approx([0.9, 0.25, 0.25, 0.15])          # nothing left: the floor
    assert describe_total(b.total, 1.2) == "0.35 above the target 1.2"
    assert any("rows typed above 0.25 sit at the clamp floor" in n for n in b.notes)


def test_anchor_clamp_floor_wins_and_is_reported():
    b = balance_strengths(rows(0.9, 1, 1, 1, 1), "anchor", target_total=1.2)
    assert b.strengths[1:] == pytest.approx([0.15] * 4)
    assert b.total == pytest.approx(1.5)
    assert any("clamped" in n for n in b.notes)


def test_anchor_row_can_be_any_row_and_off_rows_are_zero():
    b = balance_strengths(rows(0.5, 0.9, 0.7, off={2}), "anchor", anchor=1, target_total=1.2)
    assert b.strengths == pytest.approx([0.25, 0.9, 0.0])


def test_negative_strength_keeps_its_sign():
    b = balance_strengths(rows(0.9, -0.6, 0.6), "anchor", target_total=1.2)
    assert b.strengths == pytest.approx([0.9, -0.15, 0.15])


def test_proportional_sums_to_target_and_keeps_ratios():
    b = balance_strengths(rows(0.8, 0.6, 0.4), "proportional", target_total=1.2)
    assert sum(b.strengths) == pytest.approx(1.2)
    assert b.strengths[0] / b.strengths[2] == pytest.approx(2.0)


def test_off_is_as_typed():
    assert balance_strengths(rows(0.9, 0.7), "off").strengths == [0.9, 0.7]


def test_unknown_mode_is_an_input_error():
    with pytest.raises(InputError, match="balance mode"):
        balance_strengths(rows(1.0), "median")


def _delta(weight, out, inp, r, seed, scale=1.0, row_start=0):
    g = torch.Generator().manual_seed(seed)
    return LowRankDelta(weight, torch.randn(out, r, generator=g, dtype=torch.float64),
                        torch.randn(r, inp, generator=g, dtype=torch.float64), scale, row_start)


def test_gram_trick_equals_dense_norm_and_inner_product():
    d1 = _delta("w", 48, 80, 6, 1, scale=0.5)
    d2 = _delta("w", 48, 80, 3, 2, scale=2.0)
    dense1 = 0.5 * d1.up @ d1.down
    dense2 = 2.0 * d2.up @ d2.down
    assert frobenius_norm(d1) == pytest.approx(torch.linalg.norm(dense1).item(), rel=1e-12)
    assert delta_inner(d1, d2) == pytest.approx((dense1 * dense2).sum().item(), rel=1e-12)


def test_slices_of_a_fused_weight_interact_only_on_shared_rows():
    full = _delta("qkv", 30, 16, 4, 3)                        # rows 0..29 (q, k, v of 10 rows each)
    k_slice = _delta("qkv", 10, 16, 2, 4, row_start=10)       # rows 10..19
    dense_full = full.up @ full.down
    dense_k = torch.zeros(30, 16, dtype=torch.float64)
    dense_k[10:20] = k_slice.up @ k_slice.down
    assert delta_inner(full, k_slice) == pytest.approx((dense_full * dense_k).sum().item(), rel=1e-12)
    q_slice = _delta("qkv", 10, 16, 2, 5, row_start=0)
    assert delta_inner(q_slice, k_slice) == 0.0               # disjoint rows
    assert delta_inner(full, _delta("other", 30, 16, 4, 3)) == 0.0


def test_effect_mode_matches_the_anchors_change_on_shared_layers():
    personal = [_delta("linear2", 40, 60, 4, 10)]
    big = [_delta("linear2", 40, 60, 8, 11, scale=5.0), _delta("qkv", 30, 40, 8, 12)]
    b = balance_strengths(rows(0.9, 0.5), "effect", target_total=1.2, deltas=[personal, big], effect_cap=100)
    e = 0.25                                                 # the anchor rule's strength for row 2
    m_p, m_c = frobenius_norm(personal[0]), frobenius_norm(big[0])   # only linear2 is shared
    assert b.strengths[1] == pytest.approx(e * m_p / m_c, rel=1e-9)
    assert b.strengths[1] * m_c == pytest.approx(e * m_p, rel=1e-9)   # same size of change as e × personal
    cos = delta_inner(personal[0], big[0]) / (m_p * m_c)
    assert b.overlaps[1] == pytest.approx(cos, rel=1e-9)
    assert abs(cos) < 0.5


def test_effect_mode_without_shared_layers_keeps_the_anchor_rule():
    b = balance_strengths(rows(0.9, 0.5), "effect", deltas=[[_delta("a", 4, 4, 1, 1)], [_delta("b", 4, 4, 1, 2)]])
    assert b.strengths == pytest.approx([0.9, 0.25])
    assert any("shares no layer" in n for n in b.notes)


def test_effect_mode_caps_huge_strengths():
    tiny = [_delta("w", 8, 8, 2, 1, scale=1e-6)]
    b = balance_strengths(rows(0.9, 0.2), "effect", deltas=[[_delta("w", 8, 8, 2, 2)], tiny], effect_cap=2.0)
    assert b.strengths[1] == 2.0


def test_aligned_deltas_have_cosine_one():
    d = _delta("w", 8, 8, 2, 1)
    assert stack_inner([d], [d]) / frobenius_norm(d) ** 2 == pytest.approx(1.0)
    assert math.isclose(delta_inner(d, LowRankDelta("w", -d.up, d.down)), -frobenius_norm(d) ** 2)


def test_parse_rows_json_and_lines():
    parsed = parse_rows('[{"lora": "me.safetensors", "strength": 0.9, "on": true},'
                        ' {"lora": "style\\\\ink.safetensors", "strength": 0.2, "on": false}]')
    assert parsed == [StackRow("me.safetensors", 0.9, True), StackRow("style\\ink.safetensors", 0.2, False)]
    assert parse_rows("me.safetensors, 0.9\n# a comment\nstyle/ink.safetensors, 0.2, off") == [
        StackRow("me.safetensors", 0.9, True), StackRow("style/ink.safetensors", 0.2, False)]
    assert parse_rows("") == []
    with pytest.raises(InputError, match="JSON"):
        parse_rows("[{")
    with pytest.raises(InputError, match="Row 1"):
        parse_rows('[{"strength": 1}]')
