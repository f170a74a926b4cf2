// Likeness: the stack's balance maths in the page, so the LoRA stack widget shows effective strengths live.
// A mirror of likeness/strength_balance.py for the modes that need nothing but the typed numbers (off, anchor,
// proportional); `effect` needs each LoRA's weights, so the widget shows the server's values for it.
// tests/unit/test_strength_balance_js.py checks this file against the Python on a set of cases.
// No side effects: the frontend imports every .js of the pack as an extension, and this one only exports.

export const MODES = ["off", "anchor", "proportional", "effect"];

const close = (a, b) => Math.abs(a - b) <= 1e-9;

// rows: [{strength, on}], anchor: index of the personal row or null. Returns {strengths, total, anchor, notes};
// for `effect` the anchor rule (what the server starts from) with `serverOnly: true`.
export function balanceStrengths(rows, mode = "anchor", { targetTotal = 1.2, clamp = [0.15, 0.25], anchor = 0 } = {}) {
  if (!MODES.includes(mode)) throw new Error(`Unknown balance mode ${mode}`);
  const [lo, hi] = [Math.abs(clamp[0]), Math.abs(clamp[1])].sort((a, b) => a - b);
  const typed = rows.map((r) => (r.on === false ? 0 : Number(r.strength) || 0));
  const active = rows.map((r, i) => i).filter((i) => rows[i].on !== false && typed[i] !== 0);
  if (anchor !== null && anchor !== undefined && !active.includes(anchor)) anchor = null;
  if (anchor === undefined) anchor = null;
  const notes = [];
  let out;
  if (mode === "off" || active.length === 0) {
    out = typed.slice();
  } else if (mode === "proportional" || anchor === null) {
    if (mode !== "proportional") {
      notes.push("no personal (anchor) row is on: strengths scaled proportionally to the target");
    }
    out = proportional(typed, active, targetTotal);
  } else {
    out = anchored(typed, active, anchor, targetTotal, lo, hi, notes);
  }
  const total = active.reduce((sum, i) => sum + Math.abs(out[i]), 0);
  return { strengths: out, total, anchor, notes, serverOnly: mode === "effect" && anchor !== null };
}

function proportional(typed, active, target) {
  const total = active.reduce((sum, i) => sum + Math.abs(typed[i]), 0);
  return typed.map((s) => (total ? (s * target) / total : s));
}

function anchored(typed, active, anchor, target, lo, hi, notes) {
  const others = active.filter((i) => i !== anchor);
  const out = typed.slice();
  const budget = target - Math.abs(typed[anchor]);
  const total = others.reduce((sum, i) => sum + Math.abs(typed[i]), 0);
  if (others.length && budget <= 0) {
    notes.push(`the personal strength ${typed[anchor]} already reaches the target ${target}: ` +
               `the other LoRAs sit at the clamp floor ${lo}`);
  }
  for (const i of others) {
    const scaled = total ? (Math.abs(typed[i]) * Math.max(budget, 0)) / total : 0;
    const clamped = Math.min(Math.max(scaled, lo), hi);
    if (!close(clamped, scaled)) notes.push(`row ${i + 1}: ${scaled.toFixed(3)} clamped to ${clamped}`);
    out[i] = Math.sign(typed[i]) * clamped;
  }
  return out;
}
