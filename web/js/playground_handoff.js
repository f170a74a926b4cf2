// Likeness canvas extension: "open on the canvas" from the playground page (/likeness/playground).
// The page leaves the API-format prompt it planned in localStorage and opens the canvas with
// ?likeness=playground; this loads that prompt as a new workflow, once. Nothing happens on a plain visit.
import { app } from "../../../scripts/app.js";
import { rootGraph } from "./comfy_compat.js";

const HANDOFF_KEY = "likeness.playground.handoff";
const FRESH_MS = 10 * 60 * 1000;

export function takeHandoff(storage = localStorage, now = Date.now()) {
  const raw = storage.getItem(HANDOFF_KEY);
  storage.removeItem(HANDOFF_KEY);
  try {
    const handoff = JSON.parse(raw);
    return handoff?.prompt && now - handoff.time < FRESH_MS ? handoff.prompt : null;
  } catch {
    return null;
  }
}

async function graphReady() {
  while (!rootGraph()) await new Promise((resolve) => requestAnimationFrame(resolve));
}

app.registerExtension({
  name: "likeness.playgroundHandoff",
  async setup() {
    const url = new URL(location.href);
    if (url.searchParams.get("likeness") !== "playground") return;
    const prompt = takeHandoff();
    if (!prompt) return;
    await graphReady();
    // after the frontend has restored the last open workflow, so this one opens on top of it
    await new Promise((resolve) => setTimeout(resolve, 0));
    await app.loadApiJson(prompt, "Likeness playground");
    url.searchParams.delete("likeness");
    history.replaceState(null, "", url);
    window.__likeness = Object.assign(window.__likeness || {}, { handoff: Object.keys(prompt).length });
  },
});
