// Likeness: the live status of a Replicate training on the trainer node — phase, step/total, percent,
// elapsed/remaining, estimated and real cost, and a link to the training's page on Replicate.
// Fed by the server's `likeness.training` events; GET /likeness/training/status restores it after a reload —
// one request for the trainers and the training batteries (their statuses are keyed `<node>#<variant>`).
// Display only: the training runs (and is never paid twice) without this file.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { addPanelWidget, allNodes, onNodeOutput } from "./comfy_compat.js";
import { addStyle, element, usd } from "./dom.js";

const NODE = "LikenessReplicateTrainer";
const BATTERY = "LikenessTrainingBattery";
const EVENT = "likeness.training";
const PHASES = {
  estimating: "Estimating the cost", uploading: "Uploading the photos", starting: "Waiting for a GPU",
  processing: "Training", downloading: "Downloading the LoRA", succeeded: "Finished", reused: "Already trained",
  failed: "Failed", canceled: "Canceled", aborted: "Aborted", stopped: "Stopped before starting",
  error: "Stopped with an error",
};
const STYLE = `
.likeness-training { display: flex; flex-direction: column; gap: 3px; font: 12px sans-serif;
  color: var(--input-text, #ddd); }
.likeness-training .phase { font-weight: bold; }
.likeness-training .phase.ended-bad { color: #f07060; }
.likeness-training .meter { height: 8px; background: #333; border-radius: 3px; overflow: hidden; }
.likeness-training .meter div { height: 100%; background: #4e9a06; width: 0; }
.likeness-training .muted { opacity: 0.7; }
.likeness-training a { color: #6fb3ff; }`;

class TrainingStatusView {
  constructor(node) {
    this.phase = element("div", { className: "phase", textContent: "Not started" });
    this.meter = element("div", { className: "meter" }, [element("div")]);
    this.steps = element("div", { className: "steps" });
    this.times = element("div", { className: "times muted" });
    this.cost = element("div", { className: "cost" });
    this.link = element("a", { className: "replicate", target: "_blank", rel: "noopener noreferrer" });
    this.message = element("div", { className: "message muted" });
    this.root = element("div", { className: "likeness-training" },
                        [this.phase, this.meter, this.steps, this.times, this.cost, this.link, this.message]);
    this.node = node;
    this.status = null;
  }

  show(status) {
    if (!status || (this.status && (status.updated ?? 0) < (this.status.updated ?? 0))) return;
    this.status = status;
    this.root.dataset.nodeId = String(this.node.id);
    const bad = ["failed", "canceled", "aborted", "error", "stopped"].includes(status.phase);
    this.root.dataset.phase = status.phase;
    this.phase.textContent = PHASES[status.phase] ?? status.phase;
    this.phase.classList.toggle("ended-bad", bad);
    const percent = status.phase === "succeeded" ? 100 : Number(status.percent || 0);
    this.meter.firstChild.style.width = `${percent}%`;
    this.steps.textContent = status.total ? `step ${status.step}/${status.total} · ${percent}%` : "";
    this.steps.dataset.step = String(status.step ?? 0);
    const left = status.remaining && status.remaining !== "?" ? ` · ${status.remaining} left` : "";
    this.times.textContent = status.elapsed ? `${status.elapsed} elapsed${left}` : "";
    this.cost.textContent = `estimate ${usd(status.estimated_usd)} · real cost ${
      status.cost_usd === null || status.cost_usd === undefined ? "after the run" : usd(status.cost_usd)}`;
    this.link.textContent = status.training_id ? `Training ${status.training_id} on Replicate` : "";
    if (status.web_url) this.link.href = status.web_url;
    else this.link.removeAttribute("href");
    this.message.textContent = [status.lora_file ? `LoRA: ${status.lora_file}` : "", status.message || ""]
      .filter(Boolean).join(" · ");
  }
}

async function restore() {
  try {
    const response = await api.fetchApi("/likeness/training/status");
    if (!response.ok) return;
    const { statuses } = await response.json();
    for (const { node, executionId } of allNodes()) {
      if (node.comfyClass === NODE) node.likenessTraining?.show(statuses[executionId]);
      if (node.comfyClass !== BATTERY || !node.likenessBattery) continue;
      for (const [key, status] of Object.entries(statuses)) {
        if (key.startsWith(`${executionId}#`)) node.likenessBattery.show(status);
      }
    }
  } catch (error) {
    console.warn("Likeness: could not read the training status", error);
  }
}

// A loaded graph calls loadedGraphNode once per node: they share one request.
let restoring = null;
function restoreOnce() {
  restoring ??= new Promise((resolve) => setTimeout(resolve, 0)).then(restore).finally(() => { restoring = null; });
  return restoring;
}

app.registerExtension({
  name: "likeness.trainingStatus",
  async setup() {
    addStyle("likeness-training-style", STYLE);
    onNodeOutput(EVENT, (node, detail) => node.likenessTraining?.show(detail));
    api.addEventListener("reconnected", restore);
    restore();
  },
  async nodeCreated(node) {
    if (node.comfyClass !== NODE) return;
    const view = new TrainingStatusView(node);
    node.likenessTraining = view;
    addPanelWidget(node, "training_status", "likeness_training_status", view.root, () => 120);
  },
  async loadedGraphNode(node) {
    if (node.comfyClass === NODE || node.comfyClass === BATTERY) restoreOnce();
  },
});
