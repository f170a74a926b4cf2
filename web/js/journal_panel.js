// Likeness: the seed journal on the FLUX samplers (local and Replicate): the newest entries, or the most alike
// first, each with its likeness score (or why it has none) and a "replay" action; favourites only, and a lowest
// score, filter them. Replay puts the entry's prompt, seed and settings into this sampler's widgets (the seed
// fixed, so it stays) and queues the workflow; the LoRAs are those of the stack wired to it.
// Reads GET /likeness/journal?limit=N&sort=…&favourites=1&min_score=S; the journal itself is written by the
// samplers whether or not this runs.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { addPanelWidget, allNodes } from "./comfy_compat.js";
import { addStyle, element } from "./dom.js";

const LIMIT = 5;
// Each sampler's widgets an entry fills (entry field → widget name).
const FIELDS = {
  LikenessFluxSampler: { prompt: "prompt", seed: "seed", steps: "steps", guidance: "guidance", width: "width",
                         height: "height", sampler: "sampler_name", scheduler: "scheduler", max_shift: "max_shift",
                         base_shift: "base_shift" },
  LikenessReplicateFluxSampler: { prompt: "prompt", seed: "seed", steps: "steps", guidance: "guidance",
                                  aspect_ratio: "aspect_ratio" },
};
const MIN_SCORES = [["", "any likeness"], ["50", "50+ (same person)"], ["60", "60+"], ["70", "70+"], ["80", "80+"]];
const STYLE = `
.likeness-journal { display: flex; flex-direction: column; gap: 3px; font: 11px sans-serif;
  color: var(--input-text, #ddd); overflow-y: auto; }
.likeness-journal .tools { display: flex; gap: 4px; align-items: center; flex-wrap: wrap; }
.likeness-journal .entry { display: grid; grid-template-columns: 1fr auto; gap: 4px; align-items: center;
  border-bottom: 1px solid #444; padding: 2px 0; }
.likeness-journal .score { font-weight: bold; }
.likeness-journal .score.none { font-weight: normal; opacity: 0.7; }
.likeness-journal .prompt { opacity: 0.7; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.likeness-journal .empty { opacity: 0.7; }`;

// "likeness 72", the reason there is no number ("no face"), or "" when the image was not scored.
export function scoreLabel(entry) {
  const likeness = entry.likeness;
  if (!likeness) return "";
  if (typeof likeness.score === "number") return `likeness ${Math.round(likeness.score)}`;
  return likeness.reason || "";
}

function describe(entry) {
  const loras = entry.stack?.length
    ? entry.stack.map((s) => `${s.lora} ${Number(s.strength).toFixed(2)}`).join(", ") : "no LoRA";
  return `${entry.favourite ? "★ " : ""}${entry.id} · seed ${entry.seed} · ${entry.steps} steps · ` +
         `guidance ${entry.guidance} · ${entry.width}×${entry.height} · ${loras}`;
}

export function replayInto(node, entry) {
  const values = { ...entry, aspect_ratio: entry.extra?.inputs?.aspect_ratio };   // a Replicate entry's shape
  for (const [key, name] of Object.entries(FIELDS[node.comfyClass] ?? {})) {
    const widget = node.widgets?.find((w) => w.name === name);
    if (widget && values[key] !== undefined) widget.value = values[key];
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
    this.sort = element("select", { className: "sort", title: "Order of the entries" },
                        [element("option", { value: "newest", textContent: "newest first" }),
                         element("option", { value: "likeness", textContent: "most alike first" })]);
    this.favourites = element("input", { type: "checkbox", className: "favourites", title: "Favourites only" });
    this.minScore = element("select", { className: "min-score", title: "Only images scored at least this alike" },
                            MIN_SCORES.map(([value, text]) => element("option", { value, textContent: text })));
    const refresh = element("button", { textContent: "↻ journal", title: "Read the seed journal again" });
    for (const control of [this.sort, this.favourites, this.minScore]) {
      control.addEventListener("change", () => this.load());
    }
    refresh.addEventListener("click", () => this.load());
    const tools = element("div", { className: "tools" }, [
      this.sort, element("label", {}, [this.favourites, " ★ only"]), this.minScore, refresh]);
    this.root = element("div", { className: "likeness-journal" }, [tools, this.list]);
  }

  query() {
    const query = new URLSearchParams({ limit: String(LIMIT), sort: this.sort.value });
    if (this.favourites.checked) query.set("favourites", "1");
    if (this.minScore.value) query.set("min_score", this.minScore.value);
    return query;
  }

  async load() {
    try {
      const response = await api.fetchApi(`/likeness/journal?${this.query()}`);
      if (!response.ok) throw new Error(await response.text());
      const { entries } = await response.json();
      this.list.replaceChildren(...(entries.length ? entries.map((entry) => this.entryView(entry))
        : [element("div", { className: "empty", textContent: "No image in the seed journal matches." })]));
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
    const label = scoreLabel(entry);
    const score = element("span", {
      className: `score${typeof entry.likeness?.score === "number" ? "" : " none"}`,
      textContent: label ? `${label}${entry.likeness?.backend ? ` · ${entry.likeness.backend}` : ""} · ` : "",
      title: entry.likeness?.against ? `against ${entry.likeness.against}; 50 = the same-person line` : "",
    });
    const row = element("div", { className: "entry" }, [
      element("div", {}, [element("div", {}, [score, describe(entry)]),
                          element("div", { className: "prompt", textContent: entry.prompt, title: entry.prompt })]),
      replay]);
    row.dataset.id = entry.id;
    row.dataset.score = typeof entry.likeness?.score === "number" ? String(entry.likeness.score) : "";
    return row;
  }
}

app.registerExtension({
  name: "likeness.journalPanel",
  async setup() {
    addStyle("likeness-journal-style", STYLE);
    api.addEventListener("executed", ({ detail }) => {
      if (!detail?.output?.likeness_journal) return;
      const panels = new Set(allNodes().map(({ node }) => node.likenessJournal).filter(Boolean));
      for (const panel of panels) panel.load();
    });
  },
  async nodeCreated(node) {
    if (!(node.comfyClass in FIELDS)) return;
    const panel = new JournalPanel(node);
    node.likenessJournal = panel;
    addPanelWidget(node, "seed_journal", "likeness_journal", panel.root, () => 170);
    panel.load();
  },
});
