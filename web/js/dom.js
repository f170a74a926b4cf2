// The small DOM helpers every Likeness panel uses: one element builder, one style sheet per panel, one money format.
// No side effects: the frontend imports every .js of the pack as an extension, and this one only exports.

export function element(tag, props = {}, children = []) {
  const el = Object.assign(document.createElement(tag), props);
  for (const child of children) el.append(child);
  return el;
}

// Adds a panel's style sheet once per page.
export function addStyle(id, css) {
  if (document.getElementById(id)) return;
  document.head.appendChild(element("style", { id, textContent: css }));
}

// Dollars as the pack shows them: four decimals under $0.10 (a caption, a step of a training), else two.
export function usd(value) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  return `$${n.toFixed(n < 0.1 ? 4 : 2)}`;
}
