// Likeness: the stack's balance maths in the page, so the LoRA stack widget shows effective strengths live.
// A mirror of likeness/strength_balance.py for the modes that need nothing but the typed numbers (off, anchor,
// proportional); `effect` needs each LoRA's weights and `measured` the stored sweeps, so the widget shows the
// server's values for them.
// tests/unit/test_strength_balance_js.py checks this file against the Python on a set of cases.
// No side effects: the frontend imports every .js of the pack as an extension, and this one only exports.

export const MODES = ["off", "anchor", "proportional", "effect", "measured"];

const close = (a, b) => Math.abs(a - b) <= 1e-9;

// rows: [{strength, on}], anchor: index of the personal row or null. Returns {strengths, total, anchor, notes};
// for `effect` and `measured` the anchor rule (what the server starts from) with `serverOnly: true`.
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
  return { strengths: out, total, anchor, notes, serverOnly: (mode === "effect" || mode === "measured") && anchor !== null };
}

function proportional(typed, active, target) {
  const total = active.reduce((sum, i) => sum + Math.abs(typed[i]), 0);
  return typed.map((s) => (total ? (s * target) / total : s));
}

// Rows typed inside [lo, hi] keep their strength; below it, lo; above it, a share of what the others leave.
function anchored(typed, active, anchor, target, lo, hi, notes) {
  const others = active.filter((i) => i !== anchor);
  const below = others.filter((i) => Math.abs(typed[i]) < lo - 1e-9);
  const above = others.filter((i) => Math.abs(typed[i]) > hi + 1e-9);
  const out = typed.slice();
  for (const i of below) {
    notes.push(`row ${i + 1}: ${Math.abs(typed[i]).toFixed(3)} raised to the clamp floor ${lo}`);
    out[i] = Math.sign(typed[i]) * lo;
  }
  const budget = target - Math.abs(typed[anchor]) -
    others.filter((i) => !above.includes(i)).reduce((sum, i) => sum + Math.abs(out[i]), 0);
  const total = above.reduce((sum, i) => sum + Math.abs(typed[i]), 0);
  if (above.length && budget <= 0) {
    notes.push(`the personal strength ${typed[anchor]} and the other rows already reach the target ` +
               `${target}: the rows typed above ${hi} sit at the clamp floor ${lo}`);
  }
  for (const i of above) {
    const scaled = (Math.abs(typed[i]) * Math.max(budget, 0)) / total;
    const clamped = Math.min(Math.max(scaled, lo), hi);
    if (!close(clamped, scaled)) notes.push(`row ${i + 1}: ${scaled.toFixed(3)} clamped to ${clamped}`);
    out[i] = Math.sign(typed[i]) * clamped;
  }
  return out;
}

// How far the total is from the target, in words (the same text as describe_total in the Python).
export function describeTotal(total, target) {
  const gap = total - target;
  if (Math.abs(gap) < 0.005) return `on the target ${target}`;
  return `${Math.abs(gap).toFixed(2)} ${gap < 0 ? "below" : "above"} the target ${target}`;
}
