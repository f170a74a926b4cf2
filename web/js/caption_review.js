// Likeness: a minimal caption review editor on the Gemini captioner node.
// After a run, each photo shows with its caption, its lint flags and a Save button; a saved caption is
// written to the photo's .txt by the pack's route and counts as a hand edit (the captioner keeps it).
// The Python side does not depend on this file: a workflow queued through the API behaves the same.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { addPanelWidget, onNodeOutput } from "./comfy_compat.js";
import { addStyle, element } from "./dom.js";

const NODE = "LikenessGeminiCaptioner";
const STYLE = `
.likeness-review { display: flex; flex-direction: column; gap: 6px; overflow-y: auto; max-height: 420px;
  font: 12px sans-serif; color: var(--input-text, #ddd); }
.likeness-review .row { display: grid; grid-template-columns: 72px 1fr; gap: 6px; align-items: start; }
.likeness-review img { width: 72px; height: 72px; object-fit: cover; border-radius: 4px; }
.likeness-review textarea { width: 100%; min-height: 56px; resize: vertical; box-sizing: border-box;
  background: var(--comfy-input-bg, #222); color: inherit; border: 1px solid #555; border-radius: 4px; }
.likeness-review .flags { color: #f0a040; }
.likeness-review .status { opacity: 0.7; margin-left: 6px; }
.likeness-review .empty { opacity: 0.7; }`;

async function loadReview(container, review) {
  if (!review?.folder) {
    container.replaceChildren(element("div", { className: "empty",
      textContent: "The set is outside ComfyUI's output folder: edit its .txt files directly." }));
    return;
  }
  const query = new URLSearchParams({ folder: review.folder, trigger_word: review.trigger_word || "",
                                      forbidden_traits: review.forbidden_traits || "" });
  const response = await api.fetchApi(`/likeness/captions?${query}`);
  if (!response.ok) {
    container.replaceChildren(element("div", { className: "empty", textContent: await response.text() }));
    return;
  }
  const { items } = await response.json();
  container.replaceChildren(...items.map((item) => reviewRow(review, item)));
}

function reviewRow(review, item) {
  const view = new URLSearchParams({ filename: item.image, subfolder: review.folder, type: "output" });
  const text = element("textarea", { value: item.caption });
  const flags = element("div", { className: "flags", textContent: item.flags.join("; ") });
  const status = element("span", { className: "status", textContent: item.hand_edit ? "your edit" : "" });
  const save = element("button", { textContent: "Save", title: "Write this caption to the photo's .txt" });
  save.addEventListener("click", async () => {
    save.disabled = true;
    try {
      const response = await api.fetchApi("/likeness/caption", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ folder: review.folder, image: item.image, caption: text.value,
                               trigger_word: review.trigger_word || "",
                               forbidden_traits: review.forbidden_traits || "" }),
      });
      if (!response.ok) throw new Error(await response.text());
      const saved = await response.json();
      flags.textContent = saved.flags.join("; ");
      status.textContent = "saved (kept as your edit)";
    } catch (error) {
      status.textContent = `not saved: ${error.message}`;
    } finally {
      save.disabled = false;
    }
  });
  const header = element("div", {}, [element("b", { textContent: item.image }), status]);
  return element("div", { className: "row" }, [
    element("img", { src: api.apiURL(`/view?${view}`), alt: item.image, loading: "lazy" }),
    element("div", {}, [header, text, element("div", {}, [save]), flags]),
  ]);
}

app.registerExtension({
  name: "likeness.captionReview",
  async setup() {
    addStyle("likeness-review-style", STYLE);
    onNodeOutput("executed", (node, detail) => {
      const review = detail.output?.likeness_review?.[0];
      if (review && node.likenessReview) loadReview(node.likenessReview, review);
    });
  },
  async nodeCreated(node) {
    if (node.comfyClass !== NODE) return;
    const container = element("div", { className: "likeness-review" }, [
      element("div", { className: "empty", textContent: "Run the captioner to review its captions here." })]);
    node.likenessReview = container;
    addPanelWidget(node, "caption_review", "likeness_caption_review", container);
  },
});
