// Likeness playground: the controls, the cost before and after, and a run from queue to image.
// The page builds nothing itself: the pack plans an API-format prompt of its own nodes (api/plan), the page
// queues it on ComfyUI's /prompt and follows it on the websocket, exactly as the canvas would.
import { balanceStrengths, MODES as PREVIEW_MODES } from "./strength_balance.js";
import { comfy, currentUser, pack, ProgressSocket, setUser } from "./comfy_api.mjs";
import { usd } from "./dom.js";
import { Gallery, scoreText } from "./gallery.mjs";

const $ = (id) => document.getElementById(id);
const HANDOFF_KEY = "likeness.playground.handoff";     // read by web/js/playground_handoff.js on the canvas
const state = { options: null, loras: [], run: null, refineVariant: 0, nodes: {} };
let socket = null;
let gallery = null;

window.__playground = { state, ready: false };          // for the browser tests: the page finished loading

async function start() {
  try {
    if (!(await knowTheUser())) return;
    state.options = await pack("options");
    state.nodes = await nodeInfo();
    fillControls();
    gallery = new Gallery({ again: (item) => runAgain(item, false), vary: (item) => runAgain(item, true),
                            openOnCanvas: (settings) => openOnCanvas(settings) });
    socket = new ProgressSocket(onEvent);
    wireControls();
    await gallery.load();
    refreshCost();
  } catch (error) {
    say("result", `The page could not load: ${error.message}`, true);
  } finally {
    window.__playground.ready = true;
  }
}

// Under --multi-user the server needs to know who this is (the ComfyUI page keeps it in localStorage).
async function knowTheUser() {
  const users = await comfy("users");
  if (!users.users) return true;                          // single user
  if (currentUser() && users.users[currentUser()]) {
    $("user").textContent = users.users[currentUser()];
    $("user").hidden = false;
    return true;
  }
  const select = $("who-select");
  select.replaceChildren(...Object.entries(users.users).map(([id, name]) => new Option(name, id)));
  $("who").hidden = false;
  $("controls").hidden = true;
  $("gallery-section").hidden = true;
  $("who-ok").addEventListener("click", () => {
    setUser(select.value, select.selectedOptions[0].text);
    location.reload();
  });
  return false;
}

// What the pack's nodes offer here: balance modes, aspect ratios, defaults, and `candidates` where it exists.
async function nodeInfo() {
  const names = ["LikenessLoraStack", "LikenessReplicateFluxSampler", "LikenessFluxSampler"];
  const infos = await Promise.all(names.map((name) => comfy(`object_info/${name}`)));
  return Object.fromEntries(names.map((name, i) => [name, infos[i][name]]));
}

function input(node, name) {
  const info = state.nodes[node]?.input;
  return info?.required?.[name] ?? info?.optional?.[name] ?? null;
}

function choices(node, name) {
  const spec = input(node, name);
  if (!spec) return [];
  return Array.isArray(spec[0]) ? spec[0] : spec[1]?.options ?? [];
}

function fillControls() {
  const { loras, local, replicate } = state.options;
  state.loras = loras.filter((l) => !l.error && l.architecture !== "sd");
  const personal = $("personal");
  personal.replaceChildren(...state.loras.map((l) => new Option(
    l.trigger_words.length ? `${l.name} — ${l.trigger_words[0]}` : l.name, l.name)));
  const firstLikeness = state.loras.find((l) => l.likeness);
  if (firstLikeness) personal.value = firstLikeness.name;
  if (!state.loras.length) say("result", "No LoRA in models/loras yet: train one (workflow 2) or copy one there.", true);

  $("balance").replaceChildren(...choices("LikenessLoraStack", "balance").map((m) => new Option(m, m)));
  $("balance").value = "anchor";
  const aspects = choices("LikenessReplicateFluxSampler", "aspect_ratio").filter((a) => a !== "custom");
  $("aspect").replaceChildren(...aspects.map((a) => new Option(a, a)));
  const defaults = (name, fallback) => input("LikenessReplicateFluxSampler", name)?.[1]?.default ?? fallback;
  $("steps").value = defaults("steps", 35);
  $("guidance").value = defaults("guidance", 2.75);
  // Best of N, only where the sampler has it (another branch adds `candidates`).
  $("candidates-field").hidden = !input("LikenessReplicateFluxSampler", "candidates");

  $("where-local").disabled = !local.available;
  $("local-note").textContent = local.available ? `(${local.models.unet})`
    : "(needs FLUX.1-dev files: diffusion model, clip_l + t5xxl, VAE)";
  if (!replicate.token) {
    $("where-replicate").nextElementSibling.querySelector(".hint").textContent =
      "(set REPLICATE_API_TOKEN where ComfyUI starts)";
    if (local.available) $("where-local").checked = true;
  }
  showTrigger();
  previewBalance();
}

function wireControls() {
  const range = $("personal-strength-range");
  range.addEventListener("input", () => { $("personal-strength").value = range.value; changed(); });
  $("personal-strength").addEventListener("input", () => { range.value = $("personal-strength").value; changed(); });
  $("personal").addEventListener("change", () => { showTrigger(); changed(); });
  $("add-style").addEventListener("click", () => { addStyle(); changed(); });
  for (const id of ["balance", "target-total", "steps", "guidance", "aspect", "candidates", "seed", "prompt",
                    "where-replicate", "where-local"]) {
    $(id).addEventListener("change", changed);
  }
  $("prompt").addEventListener("input", () => { state.refineVariant = 0; $("refine-again").hidden = true; });
  $("seed-mode").addEventListener("change", seedMode);
  $("favourite-seed").addEventListener("change", () => { $("seed").value = $("favourite-seed").value; changed(); });
  $("refine").addEventListener("click", () => refine(0));
  $("refine-again").addEventListener("click", () => refine(state.refineVariant + 1));
  $("controls").addEventListener("submit", (event) => { event.preventDefault(); generate(); });
  $("cancel").addEventListener("click", cancel);
  $("open-canvas").addEventListener("click", () => openOnCanvas(settingsFromControls()));
}

function changed() {
  previewBalance();
  clearTimeout(changed.timer);
  changed.timer = setTimeout(refreshCost, 350);
}

function personalLora() {
  return state.loras.find((l) => l.name === $("personal").value);
}

function showTrigger() {
  const lora = personalLora();
  const word = lora?.trigger_words?.[0];
  $("trigger").textContent = word ? `Trigger word: ${word} (put first in the prompt for you)`
                                  : "This LoRA names no trigger word.";
}

function addStyle(row = { lora: "", strength: 0.2, on: true }) {
  const n = $("styles").children.length + 1;
  const li = document.createElement("li");
  const select = document.createElement("select");
  select.id = `style-${n}`;
  select.className = "style-lora";
  select.replaceChildren(...state.loras.map((l) => new Option(
    l.replicate_ref ? l.name : `${l.name} (this machine only)`, l.name)));
  if (row.lora) select.value = row.lora;
  const label = document.createElement("label");
  label.htmlFor = select.id;
  label.textContent = `Style LoRA ${n}`;
  const strength = document.createElement("input");
  Object.assign(strength, { type: "number", min: "-2", max: "5", step: "0.05", value: String(row.strength),
                            className: "style-strength", inputMode: "decimal" });
  strength.setAttribute("aria-label", `Style LoRA ${n} strength`);
  const on = document.createElement("input");
  Object.assign(on, { type: "checkbox", checked: row.on !== false, id: `style-${n}-on`, className: "style-on" });
  const onLabel = document.createElement("label");
  onLabel.htmlFor = on.id;
  onLabel.textContent = "On";
  const onBox = document.createElement("div");
  onBox.className = "choice";
  onBox.append(on, onLabel);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove style LoRA ${n}`);
  remove.addEventListener("click", () => { li.remove(); changed(); });
  const line = document.createElement("div");
  line.className = "style-line";
  line.append(strength, onBox, remove);
  for (const element of [select, strength, on]) element.addEventListener("change", changed);
  li.append(label, select, line);
  $("styles").append(li);
}

function styles() {
  return [...$("styles").children].map((li) => ({
    lora: li.querySelector(".style-lora").value,
    strength: Number(li.querySelector(".style-strength").value),
    on: li.querySelector(".style-on").checked,
  })).filter((s) => s.lora);
}

// The stack's effective strengths, live, with the same maths as the canvas widget (off/anchor/proportional);
// other modes are decided by the node when it runs.
function previewBalance() {
  const mode = $("balance").value;
  const rows = [{ strength: Number($("personal-strength").value), on: true }, ...styles()];
  if (!PREVIEW_MODES.includes(mode) || mode === "effect" || rows.length < 2) {
    $("balance-preview").textContent = rows.length < 2 ? "" : `${mode}: the stack decides the strengths when it runs.`;
    return;
  }
  const result = balanceStrengths(rows, mode, { targetTotal: Number($("target-total").value), anchor: 0 });
  const names = ["personal", ...styles().map((s, i) => `style ${i + 1}`)];
  $("balance-preview").textContent = `Used: ${result.strengths.map((s, i) => `${names[i]} ${s.toFixed(2)}`).join(", ")}` +
                                     ` · total ${result.total.toFixed(2)}`;
}

function seedMode() {
  const mode = $("seed-mode").value;
  $("favourite-seed-field").hidden = mode !== "favourite";
  if (mode === "favourite") {
    const favourites = gallery.favourites();
    $("favourite-seed").replaceChildren(...favourites.map((f) => new Option(`${f.seed} — ${f.prompt.slice(0, 40)}`, f.seed)));
    if (favourites.length) $("seed").value = favourites[0].seed;
    else say("result", "No favourite yet: open an image in the gallery and mark it.", true);
  }
}

function settingsFromControls() {
  const lora = personalLora();
  const settings = {
    where: $("where-local").checked ? "local" : "replicate",
    personal: $("personal").value,
    personal_strength: Number($("personal-strength").value),
    styles: styles(),
    balance: $("balance").value,
    target_total: Number($("target-total").value),
    prompt: $("prompt").value,
    trigger_word: lora?.trigger_words?.[0] || "",
    seed: Number($("seed").value) || 0,
    steps: Number($("steps").value),
    guidance: Number($("guidance").value),
    aspect_ratio: $("aspect").value,
  };
  if (!$("candidates-field").hidden) settings.candidates = Number($("candidates").value);
  return settings;
}

function showSettings(settings) {
  $("personal").value = settings.personal;
  $("personal-strength").value = $("personal-strength-range").value = settings.personal_strength;
  $("styles").replaceChildren();
  for (const row of settings.styles || []) addStyle(row);
  $("balance").value = settings.balance;
  $("target-total").value = settings.target_total ?? 1.2;
  $("prompt").value = settings.prompt;
  $("seed").value = settings.seed;
  $("steps").value = settings.steps;
  $("guidance").value = settings.guidance;
  $("aspect").value = settings.aspect_ratio;
  $(settings.where === "local" ? "where-local" : "where-replicate").checked = true;
  showTrigger();
  previewBalance();
}

async function refreshCost() {
  const settings = settingsFromControls();
  if (!settings.personal || !settings.prompt.trim()) {
    $("cost").textContent = "Choose a LoRA and write a prompt to see the cost.";
    return;
  }
  if ($("seed-mode").value === "random") settings.seed = newSeed();   // a new image: never "already made"
  try {
    const plan = await pack("plan", { method: "POST", body: { ...settings, dry_run: true } });
    showCost(plan);
  } catch (error) {
    $("cost").textContent = error.message;
    $("cost").classList.add("error");
  }
}

function monthLine(spend) {
  const budget = spend.budget_usd === null ? "(no monthly budget set)" : `of your ${usd(spend.budget_usd)} budget`;
  return `This month: ${usd(spend.month_usd)} spent ${budget}`;
}

function showCost(plan) {
  $("cost").classList.toggle("error", plan.spend.over_budget);
  const over = plan.spend.over_budget ? " — over the monthly budget: it would be refused" : "";
  $("cost").textContent = `${plan.estimate.text}. ${monthLine(plan.spend)}${over}`;
}

async function refine(variant) {
  const idea = $("prompt").value;
  $("refine").disabled = $("refine-again").disabled = true;
  say("refine-status", "Refining with Gemini…");
  try {
    const lora = personalLora();
    const result = await pack("refine", { method: "POST", body: { idea, trigger_word: lora?.trigger_words?.[0] || "",
                                                                  variant } });
    $("prompt").value = result.prompt;
    state.refineVariant = variant;
    $("refine-again").hidden = false;
    const cost = result.cached ? "from the cache, nothing paid" : `cost ${usd(result.cost_usd)}`;
    const removed = result.removed.length ? ` Left out (the LoRA carries these): ${result.removed.join(" ")}` : "";
    say("refine-status", `Refined (${cost}). Edit it as you like before generating.${removed}`);
    changed();
  } catch (error) {
    say("refine-status", error.message, true);
  } finally {
    $("refine").disabled = $("refine-again").disabled = false;
  }
}

function newSeed() {
  return Math.floor(Math.random() * 2 ** 32);
}

async function generate(settings = null) {
  if (state.run) return;
  if (!settings) {
    if ($("seed-mode").value === "random") $("seed").value = newSeed();
    settings = settingsFromControls();
  }
  say("result", "");
  let plan;
  try {
    plan = await pack("plan", { method: "POST", body: settings });
  } catch (error) {
    say("result", error.message, true);
    return;
  }
  showCost(plan);
  if (plan.spend.over_budget) {
    say("result", `Refused before anything was paid: ${plan.estimate.text}, and this month's budget would be passed.`, true);
    return;
  }
  if (plan.estimate.usd > 0 && !(await confirmCost(plan))) {
    say("result", "Nothing was queued.");
    return;
  }
  await queue(plan);
}

function confirmCost(plan) {
  $("confirm-cost").textContent = `${plan.estimate.text} (estimate; the real cost shows when it is done).`;
  $("confirm-month").textContent = monthLine(plan.spend);
  const dialog = $("confirm");
  dialog.showModal();
  return new Promise((resolve) => {
    const done = (answer) => { dialog.close(); resolve(answer); };
    $("confirm-pay").onclick = () => done(true);
    $("confirm-back").onclick = () => done(false);
    dialog.oncancel = () => resolve(false);
  });
}

async function queue(plan) {
  state.run = { promptId: plan.prompt_id, plan, status: "", started: Date.now() };
  showRunning(true, "Queued…");
  try {
    await comfy("prompt", { method: "POST", body: { prompt: plan.prompt, client_id: socket.clientId,
                                                    prompt_id: plan.prompt_id } });
  } catch (error) {
    state.run = null;
    showRunning(false);
    say("result", `ComfyUI refused the prompt: ${error.message}`, true);
  }
}

function showRunning(on, text = "") {
  $("run").hidden = !on;
  $("cancel").hidden = !on;
  $("generate").disabled = on;
  $("progress").value = 0;
  $("progress").max = 1;
  $("progress-text").textContent = text;
}

function onEvent(type, data) {
  const run = state.run;
  if (!run) return;
  if (type === "progress_text") {
    // the text names a node, not a prompt; ComfyUI runs one prompt at a time, so while ours runs it is ours
    if (run.executing) $("progress-text").textContent = data.text;
    return;
  }
  if (data.prompt_id !== run.promptId) return;
  if (type === "execution_start") {
    run.executing = true;
    $("progress-text").textContent = "Started…";
  }
  if (type === "execution_cached" && data.nodes?.length) $("progress-text").textContent = "Reusing what ComfyUI already has…";
  if (type === "progress") {
    $("progress").max = data.max || 1;
    $("progress").value = data.value || 0;
  }
  if (type === "execution_error") run.status = `${data.exception_type}: ${data.exception_message}`;
  if (type === "execution_interrupted") run.status = "Canceled.";
  // ComfyUI writes the history, then sends `executing` with no node: only then is the outcome readable.
  if (type === "executing" && data.node === null) finish(run);
}

async function finish(run) {
  state.run = null;
  showRunning(false);
  let outcome;
  try {
    outcome = await pack(`run?prompt_id=${encodeURIComponent(run.promptId)}`);
  } catch (error) {
    say("result", error.message, true);
    return;
  }
  if (outcome.status !== "success") {
    say("result", outcome.message || run.status || `The run ended: ${outcome.status}`, outcome.status !== "interrupted");
    refreshCost();
    return;
  }
  const estimate = run.plan.estimate;
  const cost = run.plan.settings.where === "local" ? "ran on this machine, no charge"
    : outcome.reused ? "nothing paid: the same image was already made"
    : `cost ${usd(outcome.paid_usd)} (estimate ${usd(estimate.usd)})`;
  const items = await gallery.load();
  const made = items.find((item) => outcome.entries.includes(item.id));
  const score = made ? `, ${scoreText(made.score)}` : "";
  say("result", `Done: ${cost}${score}.`);
  refreshCost();
  if (made) await gallery.open(made.id);
}

async function cancel() {
  const run = state.run;
  if (!run) return;
  $("progress-text").textContent = "Canceling…";
  await comfy("queue", { method: "POST", body: { delete: [run.promptId] } });
  await comfy("interrupt", { method: "POST", body: { prompt_id: run.promptId } });
}

async function runAgain(item, vary) {
  const settings = { ...item.settings, seed: vary ? newSeed() : item.settings.seed };
  showSettings(settings);
  $("seed-mode").value = "fixed";
  await generate(settingsFromControls());
}

// The same settings as a workflow on the canvas: the prompt the pack plans, loaded by the canvas extension.
async function openOnCanvas(settings) {
  try {
    const plan = await pack("plan", { method: "POST", body: { ...settings, dry_run: true } });
    localStorage.setItem(HANDOFF_KEY, JSON.stringify({ prompt: plan.prompt, time: Date.now() }));
    window.open(new URL("../../?likeness=playground", location.href), "_blank");
  } catch (error) {
    say("result", error.message, true);
  }
}

function say(id, text, error = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", error);
}

start();
