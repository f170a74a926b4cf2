// Likeness playground: the gallery (the seed journal, newest first, score on each image, filters) and the
// detail view of one image (its prompt, seed, strengths and cost; Again, Vary, Favourite, Download).
import { usd } from "./dom.js";
import { imageBlob, pack } from "./comfy_api.mjs";

const $ = (id) => document.getElementById(id);

export function scoreText(score) {
  return score === null || score === undefined ? "not scored" : `likeness ${Math.round(score)}`;
}

export class Gallery {
  // actions: { again(item), vary(item), openOnCanvas(settings) }
  constructor(actions) {
    this.actions = actions;
    this.items = [];
    this.urls = new Map();                  // entry id → blob URL of its first image
    this.current = null;
    $("filter-favourites").addEventListener("change", () => this.load());
    $("filter-score").addEventListener("change", () => this.load());
    $("detail-close").addEventListener("click", () => $("detail").close());
    $("detail-again").addEventListener("click", () => this.act("again"));
    $("detail-vary").addEventListener("click", () => this.act("vary"));
    $("detail-favourite").addEventListener("click", () => this.toggleFavourite());
    $("detail-download").addEventListener("click", () => this.download());
    $("detail-canvas").addEventListener("click", () => this.actions.openOnCanvas(this.current.settings));
  }

  async load() {
    const query = new URLSearchParams({ limit: "60" });
    if ($("filter-favourites").checked) query.set("favourites", "1");
    if ($("filter-score").value) query.set("min_score", $("filter-score").value);
    const { items } = await pack(`gallery?${query}`);
    this.items = items;
    $("gallery").replaceChildren(...items.map((item) => this.tile(item)));
    $("gallery-empty").hidden = items.length > 0;
    return items;
  }

  favourites() {
    return this.items.filter((item) => item.favourite);
  }

  // The tile's accessible name is its visible content: the image's alt, the score, the star.
  tile(item) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = item.id;
    const alt = `Seed ${item.seed}: ${item.prompt.slice(0, 80)}`;
    if (item.images > 0) {
      const img = document.createElement("img");
      img.alt = alt;
      this.thumbnail(item.id).then((url) => { img.src = url; })
        .catch(() => { img.replaceWith(noImage(`${alt} (image missing)`)); });
      button.append(img);
    } else {
      button.append(noImage(`${alt} (made on the canvas; no file kept)`));
    }
    if (item.score !== null && item.score !== undefined) {
      button.append(element("span", "badge", [element("span", "sr", "likeness "), String(Math.round(item.score))]));
    }
    if (item.favourite) button.append(element("span", "star", ["★", element("span", "sr", " favourite")]));
    button.addEventListener("click", () => this.open(item.id));
    const li = document.createElement("li");
    li.append(button);
    return li;
  }

  async thumbnail(id) {
    if (!this.urls.has(id)) this.urls.set(id, imageBlob(id).then((blob) => URL.createObjectURL(blob)));
    return this.urls.get(id);
  }

  async open(id) {
    const item = this.items.find((i) => i.id === id) || (await this.load()).find((i) => i.id === id);
    if (!item) return;
    this.current = item;
    $("detail-title").textContent = `Seed ${item.seed}`;
    const img = $("detail-image");
    img.alt = item.prompt;
    img.hidden = item.images === 0;
    if (item.images > 0) img.src = await this.thumbnail(item.id);
    const facts = [
      ["Likeness", scoreText(item.score)],
      ["Prompt", item.prompt],
      ["Seed", String(item.seed)],
      ["Steps · guidance", `${item.steps} · ${item.guidance}`],
      ["Size", `${item.width} × ${item.height}`],
      ["LoRAs", item.stack.map((s) => `${s.lora} ${Number(s.strength).toFixed(2)}`).join(", ") || "none"],
      ["Cost", item.source === "replicate" ? `${usd(item.cost_usd)} (estimate ${usd(item.estimated_usd)})`
                                           : "this machine: no charge"],
      ["Made", `${when(item.time)} on ${item.source === "replicate" ? "Replicate" : "this machine"}`],
    ];
    $("detail-facts").replaceChildren(...facts.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      return [dt, dd];
    }));
    this.showFavourite(item.favourite);
    for (const name of ["detail-again", "detail-vary", "detail-canvas"]) $(name).disabled = !item.settings;
    if (!$("detail").open) $("detail").showModal();
  }

  showFavourite(on) {
    $("detail-favourite").setAttribute("aria-pressed", String(on));
    $("detail-favourite").textContent = on ? "★ Favourite" : "Favourite";
  }

  async toggleFavourite() {
    const item = this.current;
    const { favourite } = await pack("favourite", { method: "POST", body: { id: item.id, favourite: !item.favourite } });
    item.favourite = favourite;
    this.showFavourite(favourite);
    await this.load();
  }

  async download() {
    const blob = await imageBlob(this.current.id);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `likeness-${this.current.id}.${{ "image/jpeg": "jpg", "image/webp": "webp" }[blob.type] || "png"}`;
    document.body.append(link);
    link.click();
    link.remove();
  }

  act(what) {
    $("detail").close();
    this.actions[what](this.current);
  }
}

// The journal's "2026-12-05T06:17:32+0000" in the reader's own words.
function when(stamp) {
  const date = new Date(String(stamp).replace(/([+-]\d\d)(\d\d)$/, "$1:$2"));
  return Number.isNaN(date.getTime()) ? stamp : date.toLocaleString();
}

function element(tag, className, children) {
  const found = document.createElement(tag);
  found.className = className;
  found.append(...(Array.isArray(children) ? children : [children]));
  return found;
}

function noImage(text) {
  const span = document.createElement("span");
  span.className = "noimg";
  span.textContent = text;
  return span;
}
