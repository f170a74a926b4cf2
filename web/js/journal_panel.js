// Likeness: the seed journal's newest entries on the FLUX sampler, each with a "replay" action.
// Replay puts the entry's prompt, seed and settings into this sampler's widgets (the seed fixed, so it stays)
// and queues the workflow; the LoRAs are those of the stack wired to it (a note says so when they differ).
// Reads GET /likeness/journal?limit=N; the journal itself is written by the sampler whether or not this runs.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const NODE = "LikenessFluxSampler";
const LIMIT = 5;
const FIELDS = { prompt: "prompt", seed: "seed", steps: "steps", guidance: "guidance", width: "width",
                 height: "height", sampler: "sampler_name", scheduler: "scheduler", max_shift: "max_shift",
                 base_shift: "base_shift" };
const STYLE = `
.likeness-journal { display: flex; flex-direction: column; gap: 3px; font: 11px sans-serif;
  color: var(--input-text, #ddd); overflow-y: auto; }
.likeness-journal .entry { display: grid; grid-template-columns: 1fr auto; gap: 4px; align-items: center;
  border-bottom: 1px solid #444; padding: 2px 0; }
.likeness-journal .prompt { opacity: 0.7; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.likeness-journal .empty { opacity: 0.7; }`;

function element(tag, props = {}, children = []) {
  const el = Object.assign(document.createElement(tag), props);
  for (const child of children) el.append(child);
  return el;
}

function describe(entry) {
  const loras = entry.stack?.length
    ? entry.stack.map((s) => `${s.lora} ${Number(s.strength).toFixed(2)}`).join(", ") : "no LoRA";
  return `${entry.favourite ? "★ " : ""}${entry.id} · seed ${entry.seed} · ${entry.steps} steps · ` +
         `guidance ${entry.guidance} · ${entry.width}×${entry.height} · ${loras}`;
}

export function replayInto(node, entry) {
  for (const [key, name] of Object.entries(FIELDS)) {
    const widget = node.widgets?.find((w) => w.name === name);
    if (widget && entry[key] !== undefined) widget.value = entry[key];
  }
  const control = node.widgets?.find((w) => w.name === "control_after_generate");
  if (control) control.value = "fixed";              // keep the replayed seed for this and the next run
  node.setDirtyCanvas?.(true, true);
}

class JournalPanel {
  constructor(node) {
    this.node = node;
    this.list = element("div", { className: "entries" },
                        [element("div", { className: "empty", textContent: "No image in the seed journal yet." })]);
    const refresh = element("button", { textContent: "↻ journal", title: "Read the seed journal again" });
    refresh.addEventListener("click", () => this.load());
    this.root = element("div", { className: "likeness-journal" }, [this.list, element("div", {}, [refresh])]);
  }

  async load() {
    try {
      const response = await api.fetchApi(`/likeness/journal?limit=${LIMIT}`);
      if (!response.ok) throw new Error(await response.text());
      const { entries } = await response.json();
      if (!entries.length) return;
      this.list.replaceChildren(...entries.map((entry) => this.entryView(entry)));
    } catch (error) {
      this.list.replaceChildren(element("div", { className: "empty", textContent: `Journal: ${error.message}` }));
    }
  }

  entryView(entry) {
    const replay = element("button", { className: "replay", textContent: "replay",
                                       title: "Use this entry's prompt, seed and settings, and queue" });
    replay.addEventListener("click", async () => {
      replayInto(this.node, entry);
      await app.queuePrompt(0, 1);
    });
    const row = element("div", { className: "entry" }, [
      element("div", {}, [element("div", { textContent: describe(entry) }),
                          element("div", { className: "prompt", textContent: entry.prompt, title: entry.prompt })]),
      replay]);
    row.dataset.id = entry.id;
    return row;
  }
}

app.registerExtension({
  name: "likeness.journalPanel",
  async setup() {
    if (!document.getElementById("likeness-journal-style")) {
      document.head.appendChild(element("style", { id: "likeness-journal-style", textContent: STYLE }));
    }
    api.addEventListener("executed", ({ detail }) => {
      if (!detail?.output?.likeness_journal) return;
      for (const node of app.graph?._nodes ?? []) node.likenessJournal?.load();
    });
  },
  async nodeCreated(node) {
    if (node.comfyClass !== NODE) return;
    const panel = new JournalPanel(node);
    node.likenessJournal = panel;
    const widget = node.addDOMWidget("seed_journal", "likeness_journal", panel.root,
                                     { serialize: false, getMinHeight: () => 150 });
    widget.serialize = false;
    panel.load();
  },
});
