// Likeness: the training battery's panel. While the user edits the tables it says how many trainings they make
// (POST /likeness/battery/plan, and whether the tick is needed); while the battery runs it shows each variant —
// phase, step/total, cost so far (the real cost once it ended), its Replicate page — from the trainer's own
// `likeness.training` events (those of a battery carry `battery` and `variant`); training_status.js restores them
// after a reload. Display only: the battery runs, and is never paid twice, without this file.
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";
import { addPanelWidget, onNodeOutput } from "./comfy_compat.js";
import { addStyle, element, usd } from "./dom.js";

const NODE = "LikenessTrainingBattery";
const EVENT = "likeness.training";
const TABLE_WIDGETS = ["base", "variations", "expand", "confirm_large_battery"];
const PHASES = {
  queued: "Waiting for a free slot", estimating: "Estimating", uploading: "Uploading the photos",
  starting: "Waiting for a GPU", processing: "Training", downloading: "Downloading the LoRA",
  succeeded: "Finished", reused: "Already trained", failed: "Failed", canceled: "Canceled", aborted: "Aborted",
  stopped: "Not started", error: "Stopped with an error",
};
const BAD = ["failed", "canceled", "aborted", "error", "stopped"];
const STYLE = `
.likeness-battery { display: flex; flex-direction: column; gap: 4px; font: 12px sans-serif;
  color: var(--input-text, #ddd); overflow-y: auto; }
.likeness-battery .plan { font-weight: bold; }
.likeness-battery .warn { color: #f0a040; }
.likeness-battery .warn:empty { display: none; }
.likeness-battery table { border-collapse: collapse; width: 100%; }
.likeness-battery td { padding: 1px 4px; border-bottom: 1px solid #444; white-space: nowrap; }
.likeness-battery tr.bad .phase { color: #f07060; }
.likeness-battery tr.done .phase { color: #70c070; }
.likeness-battery .muted { opacity: 0.7; }
.likeness-battery a { color: #6fb3ff; }`;

class BatteryPanel {
  constructor(node) {
    this.node = node;
    this.plan = element("div", { className: "plan", textContent: "…" });
    this.warn = element("div", { className: "warn" });
    this.rows = element("tbody");
    this.total = element("div", { className: "total muted" });
    this.root = element("div", { className: "likeness-battery" },
                        [this.plan, this.warn, element("table", {}, [this.rows]), this.total]);
    this.variants = new Map();        // variant index → latest status of the newest battery
    this.battery = null;
    this.newest = 0;
    this.timer = null;
  }

  value(name) {
    return this.node.widgets?.find((w) => w.name === name)?.value;
  }

  // The tables changed: ask the server how many trainings they make (after the user pauses typing).
  schedulePlan() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.loadPlan(), 300);
  }

  async loadPlan() {
    const body = { base: String(this.value("base") ?? ""), variations: String(this.value("variations") ?? ""),
                   expand: String(this.value("expand") ?? "") };
    try {
      const response = await api.fetchApi("/likeness/battery/plan", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const answer = await response.json();
      this.showPlan(answer);
    } catch (error) {
      console.warn("Likeness: could not count the battery's trainings", error);
    }
  }

  showPlan(answer) {
    this.root.dataset.nodeId = String(this.node.id);
    if (answer.error) {
      this.plan.textContent = "The tables cannot be read";
      this.plan.dataset.count = "";
      this.warn.textContent = answer.error;
      return;
    }
    this.plan.dataset.count = String(answer.count);
    this.plan.textContent = answer.description;
    const needsTick = answer.count > answer.confirm_above && !this.value("confirm_large_battery");
    this.warn.textContent = needsTick
      ? `More than ${answer.confirm_above} trainings: tick confirm_large_battery to run them (trainings already ` +
        "done are reused and do not count)." : "";
  }

  show(status) {
    if (!status || status.variant === undefined) return;
    if (status.battery !== this.battery) {
      if (this.battery && (status.updated ?? 0) < this.newest) return;        // an older battery's status
      this.battery = status.battery;
      this.variants.clear();
    }
    const known = this.variants.get(status.variant);
    if (known && (status.updated ?? 0) < (known.updated ?? 0)) return;
    this.variants.set(status.variant, status);
    this.newest = Math.max(this.newest, status.updated ?? 0);
    this.render();
  }

  render() {
    this.root.dataset.nodeId = String(this.node.id);
    this.root.dataset.battery = this.battery ?? "";
    const ordered = [...this.variants.values()].sort((a, b) => a.variant - b.variant);
    this.rows.replaceChildren(...ordered.map((s) => this.row(s)));
    const ended = ordered.filter((s) => s.ended).length;
    const spent = ordered.reduce((sum, s) => sum + Number(s.cost_so_far_usd || 0), 0);
    const estimate = ordered.reduce((sum, s) => sum + Number(s.estimated_usd || 0), 0);
    this.total.textContent = `Battery ${this.battery}: ${ordered.length} variants, ${ended} ended · cost so far ` +
      `${usd(spent)} (estimate ${usd(estimate)})`;
  }

  row(s) {
    const tr = element("tr", { className: BAD.includes(s.phase) ? "bad" : s.ended ? "done" : "" });
    tr.dataset.variant = String(s.variant);
    tr.dataset.phase = s.phase;
    tr.dataset.step = String(s.step ?? 0);
    const percent = s.phase === "succeeded" || s.phase === "reused" ? 100 : Number(s.percent || 0);
    const steps = s.total ? `${s.step ?? 0}/${s.total} · ${percent}%` : "";
    const cost = s.cost_usd !== null && s.cost_usd !== undefined
      ? `${usd(s.cost_usd)}` : `${usd(s.cost_so_far_usd ?? 0)} so far`;
    const link = element("a", { textContent: s.training_id ? "Replicate" : "", target: "_blank",
                                rel: "noopener noreferrer" });
    if (s.web_url) link.href = s.web_url;
    tr.append(element("td", { className: "label", textContent: s.label }),
              element("td", { className: "phase", textContent: PHASES[s.phase] ?? s.phase, title: s.message || "" }),
              element("td", { className: "steps muted", textContent: steps }),
              element("td", { className: "cost", textContent: cost }),
              element("td", {}, [link]));
    return tr;
  }
}

function watchTables(node, panel) {
  for (const widget of node.widgets ?? []) {
    if (!TABLE_WIDGETS.includes(widget.name)) continue;
    const original = widget.callback;
    widget.callback = function (...args) {
      panel.schedulePlan();
      return original?.apply(this, args);
    };
    // typing in a text box: `element` (inputEl is its deprecated name from frontend 1.4x on)
    (widget.element ?? widget.inputEl)?.addEventListener?.("input", () => panel.schedulePlan());
  }
}

app.registerExtension({
  name: "likeness.batteryStatus",
  async setup() {
    addStyle("likeness-battery-style", STYLE);
    onNodeOutput(EVENT, (node, detail) => {
      if (detail?.battery !== undefined && node.comfyClass === NODE) node.likenessBattery?.show(detail);
    });
  },
  async nodeCreated(node) {
    if (node.comfyClass !== NODE) return;
    const panel = new BatteryPanel(node);
    node.likenessBattery = panel;
    addPanelWidget(node, "battery_status", "likeness_battery_status", panel.root, () => 130);
    watchTables(node, panel);
    panel.schedulePlan();
  },
  async loadedGraphNode(node) {
    if (node.comfyClass !== NODE) return;
    node.likenessBattery?.schedulePlan();
  },
});
