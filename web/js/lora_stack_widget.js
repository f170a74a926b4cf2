// Likeness: a visual rows editor on the LoRA stack node, in place of the raw `rows` JSON.
// Rows can be added, removed, reordered, switched on/off and dragged to a strength; a bar shows the total
// against target_total (and how far from it the stack is) and each row's balanced (effective) strength,
// recomputed live as the user drags (strength_balance.js, the same maths as the node). Each row shows its LoRA's
// key format, how many keys apply and its trigger words (GET /likeness/lora_info before a run; the node's own
// report after one). A LoRA that applies nothing to the model is left out of the balance, as the node does.
// The widget only writes the `rows` widget's JSON: a workflow queued through the API behaves the same.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { decisionText } from "./balance_decisions.js";
import { addPanelWidget, hideWidget, onNodeOutput, redrawCanvas } from "./comfy_compat.js";
import { balanceStrengths, describeTotal } from "./strength_balance.js";
import { addStyle, element } from "./dom.js";

const NODE = "LikenessLoraStack";
const ROW_HEIGHT = 76;
const STYLE = `
.likeness-stack { display: flex; flex-direction: column; gap: 4px; font: 12px sans-serif;
  color: var(--input-text, #ddd); overflow-y: auto; }
.likeness-stack > *, .likeness-stack .rows > * { flex-shrink: 0; }
.likeness-stack .rows { display: flex; flex-direction: column; gap: 4px; }
.likeness-stack .row { display: grid; grid-template-columns: 18px 1fr 90px 50px 44px 62px; gap: 4px;
  align-items: center; border: 1px solid #444; border-radius: 4px; padding: 3px; }
.likeness-stack .row.off { opacity: 0.55; }
.likeness-stack .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.likeness-stack .personal { color: #8fd18f; margin-left: 4px; }
.likeness-stack input[type=range] { width: 100%; margin: 0; }
.likeness-stack input[type=number] { width: 46px; background: var(--comfy-input-bg, #222); color: inherit;
  border: 1px solid #555; border-radius: 3px; }
.likeness-stack .effective { text-align: right; font-weight: bold; }
.likeness-stack .moves { display: flex; gap: 2px; }
.likeness-stack .moves button { padding: 0 4px; font-size: 11px; }
.likeness-stack .info { grid-column: 2 / 7; opacity: 0.8; font-size: 11px; }
.likeness-stack .info.warn { color: #f0a040; opacity: 1; }
.likeness-stack .decided { grid-column: 2 / 7; font-size: 11px; color: #8ab4f8; }
.likeness-stack .bar { position: relative; height: 14px; background: #333; border-radius: 3px; overflow: hidden; }
.likeness-stack .bar .seg { position: absolute; top: 0; bottom: 0; border-right: 1px solid #222; }
.likeness-stack .bar .target { position: absolute; top: 0; bottom: 0; width: 2px; background: #fff; }
.likeness-stack .summary { display: flex; justify-content: space-between; }
.likeness-stack .notes { color: #f0a040; font-size: 11px; }
.likeness-stack .add { display: flex; gap: 4px; }
.likeness-stack .add select { flex: 1; min-width: 0; background: var(--comfy-input-bg, #222); color: inherit; }`;
const COLOURS = ["#4e9a06", "#3465a4", "#c4a000", "#75507b", "#ce5c00", "#06989a", "#cc0000"];
const infoCache = new Map();

// The rows as the node reads them: JSON, or "name.safetensors, 0.9[, off]" lines (likeness/strength_balance.py).
export function parseRows(text) {
  text = (text || "").trim();
  if (!text) return [];
  if (text.startsWith("[")) {
    try {
      return JSON.parse(text).map((r) => ({ lora: String(r.lora ?? r.name ?? ""), strength: Number(r.strength ?? 1),
                                            on: r.on !== false,
                                            ...(r.clip_strength != null ? { clip_strength: r.clip_strength } : {}) }));
    } catch {
      return null;                                   // not ours to fix: the node reports the JSON error
    }
  }
  return text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).map((line) => {
    const parts = line.split(",").map((p) => p.trim());
    return { lora: parts[0], strength: parts[1] ? Number(parts[1]) : 1,
             on: !(parts[2] && ["off", "false", "0", "no"].includes(parts[2].toLowerCase())) };
  });
}

async function loraInfo(name) {
  if (!infoCache.has(name)) {
    infoCache.set(name, api.fetchApi(`/likeness/lora_info?${new URLSearchParams({ name })}`)
      .then(async (r) => (r.ok ? r.json() : { error: await r.text() }))
      .catch((e) => ({ error: String(e) })));
  }
  return infoCache.get(name);
}

// Read each time the picker fills: a LoRA the trainer just installed (or the user just copied) shows up.
async function loraNames() {
  return api.fetchApi("/models/loras").then((r) => (r.ok ? r.json() : [])).catch(() => []);
}

class StackEditor {
  constructor(node) {
    this.node = node;
    this.rowsWidget = node.widgets.find((w) => w.name === "rows");
    this.server = null;                              // the node's last report: likeness_stack rows
    this.root = element("div", { className: "likeness-stack" });
    this.root.dataset.nodeId = String(node.id);
    this.list = element("div", { className: "rows" });
    this.bar = element("div", { className: "bar" });
    this.summary = element("div", { className: "summary" });
    this.notes = element("div", { className: "notes" });
    this.picker = element("select", { className: "add-lora", title: "A LoRA from models/loras" });
    this.picker.addEventListener("focus", () => this.fillPicker());
    const add = element("button", { className: "add-row", textContent: "+ Add LoRA" });
    add.addEventListener("click", () => this.addRow(this.picker.value));
    this.root.append(this.list, this.bar, this.summary, this.notes, element("div", { className: "add" }, [this.picker, add]));
    this.rows = [];
    this.views = [];
    this.leftOut = new Map();                        // LoRA name -> why it applies nothing (left out of the balance)
  }

  settings() {
    const value = (name, fallback) => this.node.widgets.find((w) => w.name === name)?.value ?? fallback;
    const anchorRow = Number(value("anchor_row", 1));
    return { mode: value("balance", "anchor"), targetTotal: Number(value("target_total", 1.2)),
             clamp: [Number(value("clamp_min", 0.15)), Number(value("clamp_max", 0.25))],
             anchor: anchorRow > 0 ? anchorRow - 1 : null };
  }

  readRows() {
    this.root.dataset.nodeId = String(this.node.id);
    const parsed = parseRows(this.rowsWidget?.value);
    this.invalid = parsed === null;
    this.rows = parsed ?? [];
    this.render();
  }

  writeRows() {
    if (this.rowsWidget) this.rowsWidget.value = JSON.stringify(this.rows);
    this.node.setDirtyCanvas?.(true, true);
  }

  addRow(name) {
    if (!name) return;
    this.rows.push({ lora: name, strength: this.rows.length ? 0.2 : 0.9, on: true });
    this.writeRows();
    this.render();
  }

  async fillPicker() {
    const names = await loraNames();
    const current = this.picker.value;
    this.picker.replaceChildren(...names.map((n) => element("option", { value: n, textContent: n })));
    if (names.includes(current)) this.picker.value = current;
  }

  render() {
    this.views = this.rows.map((row, i) => this.rowView(row, i));
    this.list.replaceChildren(...this.views.map((v) => v.el));
    if (this.invalid) {
      this.list.replaceChildren(element("div", { className: "notes",
        textContent: "The rows are not valid JSON: fix them or clear the rows to start again." }));
    }
    this.update();
    this.resize();
  }

  rowView(row, i) {
    const on = element("input", { type: "checkbox", className: "on", checked: row.on, title: "Use this LoRA" });
    const slider = element("input", { type: "range", className: "strength", min: -1, max: 2, step: 0.01,
                                      value: row.strength, title: "Strength as typed" });
    const number = element("input", { type: "number", className: "strength-value", step: 0.01, value: row.strength });
    const effective = element("div", { className: "effective", title: "The strength actually used" });
    const name = element("div", { className: "name", textContent: row.lora, title: row.lora });
    const info = element("div", { className: "info", textContent: "reading the file…" });
    const moves = element("div", { className: "moves" }, [
      element("button", { className: "up", textContent: "▲", title: "Move up", disabled: i === 0 }),
      element("button", { className: "down", textContent: "▼", title: "Move down", disabled: i === this.rows.length - 1 }),
      element("button", { className: "remove", textContent: "✕", title: "Remove this row" })]);
    const decided = element("div", { className: "decided", title: "Which rule decided the strength used" });
    const el = element("div", { className: `row${row.on ? "" : " off"}` },
                       [on, name, slider, number, effective, moves, info, decided]);
    el.dataset.index = String(i);
    const setStrength = (value) => {
      if (!Number.isFinite(value)) return;
      row.strength = Math.round(value * 1000) / 1000;
      slider.value = String(row.strength);
      number.value = String(row.strength);
      this.writeRows();
      this.update();
    };
    slider.addEventListener("input", () => setStrength(Number(slider.value)));
    number.addEventListener("change", () => setStrength(Number(number.value)));
    on.addEventListener("change", () => {
      row.on = on.checked;
      el.classList.toggle("off", !row.on);
      this.writeRows();
      this.update();
    });
    moves.addEventListener("click", (event) => {
      const kind = event.target.className;
      if (kind === "remove") this.rows.splice(i, 1);
      else if (kind === "up" && i > 0) [this.rows[i - 1], this.rows[i]] = [this.rows[i], this.rows[i - 1]];
      else if (kind === "down" && i < this.rows.length - 1) [this.rows[i + 1], this.rows[i]] = [this.rows[i], this.rows[i + 1]];
      else return;
      this.writeRows();
      this.render();
    });
    for (const stop of [slider, number]) stop.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.describe(row, info);
    return { el, row, effective, name, info, decided };
  }

  async describe(row, infoEl) {
    const served = this.serverRow(row);
    if (served?.format_label) {
      infoEl.textContent = rowInfoText(served.format_label, served.keys_applied, served.keys, served.trigger_words);
      if (served.left_out) infoEl.textContent += ` · left out: ${served.left_out}`;
      infoEl.classList.toggle("warn", served.keys_applied === 0);
      this.markLeftOut(row.lora, served.left_out || "");
      return;
    }
    const info = await loraInfo(row.lora);
    if (info.error) {
      infoEl.textContent = info.error;
      infoEl.classList.add("warn");
      return;
    }
    const applies = info.warning ? 0 : null;
    infoEl.textContent = info.warning
      ? `${info.warning}${words(info.trigger_words)} · left out`
      : rowInfoText(info.format_label, applies, info.keys, info.trigger_words);
    infoEl.classList.toggle("warn", Boolean(info.warning));
    this.markLeftOut(row.lora, info.warning || "");
  }

  markLeftOut(name, reason) {
    if ((this.leftOut.get(name) || "") === reason) return;
    if (reason) this.leftOut.set(name, reason);
    else this.leftOut.delete(name);
    this.update();
  }

  serverRow(row) {
    return this.server?.find((s) => s.lora === row.lora && s.source === "row") ?? null;
  }

  update() {
    const s = this.settings();
    const usable = this.rows.map((r) => (this.leftOut.has(r.lora) ? { ...r, on: false } : r));
    const result = balanceStrengths(usable, s.mode, s);
    const scale = Math.max(s.targetTotal, result.total, 0.01) * 1.1;
    const segs = [];
    let left = 0;
    this.views.forEach((view, i) => {
      const served = this.serverRow(view.row);
      const fromServer = result.serverOnly && served && (s.mode === "measured" || i !== result.anchor);
      const value = fromServer ? served.effective : result.strengths[i];
      const out = view.row.on && this.leftOut.has(view.row.lora);
      view.decided.textContent = out ? "" : decisionText(view.row, served?.mode === s.mode ? served : null, s.mode,
                                                         result.anchor === null ? null : i === result.anchor);
      view.effective.textContent = out ? "out" : view.row.on ? value.toFixed(3) : "off";
      view.effective.title = out ? `left out: ${this.leftOut.get(view.row.lora)}` : "The strength actually used";
      view.effective.dataset.value = String(view.row.on && !out ? value : 0);
      view.name.replaceChildren(document.createTextNode(view.row.lora));
      if (i === result.anchor) view.name.append(element("span", { className: "personal", textContent: "personal" }));
      const width = (Math.abs(view.row.on ? value : 0) / scale) * 100;
      if (width > 0) {
        segs.push(element("div", { className: "seg", title: `${view.row.lora}: ${value.toFixed(3)}`,
          style: `left:${left}%;width:${width}%;background:${COLOURS[i % COLOURS.length]}` }));
      }
      left += width;
    });
    segs.push(element("div", { className: "target", title: `target ${s.targetTotal}`,
                               style: `left:${(s.targetTotal / scale) * 100}%` }));
    this.bar.replaceChildren(...segs);
    const mode = result.serverOnly ? `${s.mode} (values from the last run)` : s.mode;
    this.summary.replaceChildren(
      element("span", { className: "total", textContent: `total ${result.total.toFixed(2)}` }),
      element("span", { className: "gap", textContent: `${describeTotal(result.total, s.targetTotal)} · ${mode}` }));
    this.summary.dataset.total = String(result.total);
    this.notes.textContent = result.notes.join("; ");
  }

  showServer(rowsUi) {
    this.server = rowsUi;
    this.render();
  }

  resize() {
    const height = this.minHeight();
    const size = this.node.computeSize?.();
    if (size && this.node.size[1] < size[1]) this.node.setSize([this.node.size[0], size[1]]);
    this.root.style.minHeight = `${height}px`;
    redrawCanvas();
  }

  minHeight() {
    return 110 + Math.max(this.rows.length, 1) * ROW_HEIGHT;
  }
}

function words(list) {
  return list?.length ? ` · trigger: ${list.join(", ")}` : "";
}

function rowInfoText(label, applied, keys, trigger) {
  const coverage = applied === null || applied === undefined ? `${keys} keys` : `${applied} of ${keys} keys apply`;
  return `${label} format: ${coverage}${words(trigger)}`;
}

function editorOf(node) {
  return node?.likenessStack;
}

app.registerExtension({
  name: "likeness.loraStack",
  async setup() {
    addStyle("likeness-stack-style", STYLE);
    onNodeOutput("executed", (node, detail) => {
      const rowsUi = detail.output?.likeness_stack;
      if (rowsUi) editorOf(node)?.showServer(rowsUi);
    });
  },
  async nodeCreated(node) {
    if (node.comfyClass !== NODE) return;
    const editor = new StackEditor(node);
    node.likenessStack = editor;
    hideWidget(editor.rowsWidget);                    // the editor writes it; the JSON stays in the workflow
    addPanelWidget(node, "stack_editor", "likeness_lora_stack", editor.root, () => editor.minHeight());
    for (const name of ["balance", "target_total", "clamp_min", "clamp_max", "anchor_row"]) {
      const w = node.widgets.find((x) => x.name === name);
      if (!w) continue;
      const previous = w.callback;
      w.callback = function (...args) {
        const result = previous?.apply(this, args);
        editor.update();
        return result;
      };
    }
    // The saved rows arrive after nodeCreated, whenever the node is configured from a workflow: loading one,
    // pasting, or "Convert to Subgraph" (which re-creates the node inside the subgraph).
    const configure = node.onConfigure;
    node.onConfigure = function (...args) {
      const result = configure?.apply(this, args);
      editor.readRows();
      return result;
    };
    editor.readRows();
    editor.fillPicker();
  },
});
