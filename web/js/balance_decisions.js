// Likeness: which rule decided each LoRA row's strength, in words, for the stack widget.
// The server says it after a run (`decided_by` in the node's likeness_stack rows, with the sweep's id and its
// likeness for `measured`); before that the widget works it out from the mode, as the server would.
// No side effects: the frontend imports every .js of the pack as an extension, and this one only exports.

// served: the node's last report for this row (or null); mode: the balance widget; personal: is the anchor row.
export function decisionText(row, served, mode, personal) {
  if (served?.decided_by) return describe(served);
  if (row.on === false) return "off";
  if (mode === "off") return "typed";
  if (mode === "proportional" || personal === null) return "proportional";
  if (personal) return mode === "measured" ? "measured · read from the sweeps when it runs" : "typed (personal)";
  if (mode === "measured") return "measured · read from the sweeps when it runs";
  return mode;
}

function describe(served) {
  if (served.decided_by !== "measured") return served.personal && served.decided_by === "typed" ? "typed (personal)" : served.decided_by;
  const likeness = served.sweep_likeness === null || served.sweep_likeness === undefined
    ? "" : ` · likeness ${Math.round(served.sweep_likeness)}`;
  return `measured · sweep ${served.sweep}${likeness}`;
}
