// Likeness playground: talking to the ComfyUI server that serves this page — the pack's routes (api/…),
// ComfyUI's own /prompt, /interrupt, /queue, /object_info, and its websocket for live progress.
// Every request names the ComfyUI user as the ComfyUI frontend does (the Comfy-User header, from the same
// localStorage key), so under --multi-user each person sees their own images.

const ROOT = new URL("../../", location.href);            // the page lives at <root>/likeness/playground/
const USER_KEY = "Comfy.userId";
const TEXT_EVENT = 3;                                       // ComfyUI's binary "progress text" event

export const currentUser = () => localStorage.getItem(USER_KEY) || "";

export function setUser(id, name) {
  localStorage.setItem(USER_KEY, id);
  localStorage.setItem("Comfy.userName", name);
}

export class RequestError extends Error {}

async function request(url, { method = "GET", body } = {}) {
  const headers = {};
  if (currentUser()) headers["Comfy-User"] = currentUser();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, { method, headers, cache: "no-cache",
                                      body: body === undefined ? undefined : JSON.stringify(body) });
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new RequestError(errorText(data, response.status));
  return data;
}

function errorText(data, status) {
  if (typeof data === "string") return data.trim() || `HTTP ${status}`;
  if (typeof data?.error === "string") return data.error;
  if (data?.error?.message) {                                // ComfyUI's /prompt refusal
    const nodes = Object.values(data.node_errors || {}).flatMap((n) => n.errors || []);
    return [data.error.message, ...nodes.map((e) => `${e.message}: ${e.details}`)].join(" — ");
  }
  return `HTTP ${status}`;
}

// The pack's playground routes, relative to the page.
export const pack = (path, options) => request(new URL(`api/${path}`, location.href), options);
// ComfyUI's own routes.
export const comfy = (path, options) => request(new URL(path, ROOT), options);

// An entry's image as a Blob (an <img> could not send the user header).
export async function imageBlob(id, n = 0) {
  const headers = currentUser() ? { "Comfy-User": currentUser() } : {};
  const response = await fetch(new URL(`api/image?id=${encodeURIComponent(id)}&n=${n}`, location.href), { headers });
  if (!response.ok) throw new RequestError(await response.text());
  return response.blob();
}

// ComfyUI's websocket: JSON events, and binary progress text ("Generating on Replicate: step 12/35").
export class ProgressSocket {
  constructor(onEvent) {
    this.clientId = crypto.randomUUID ? crypto.randomUUID().replaceAll("-", "") : String(Math.random()).slice(2);
    this.onEvent = onEvent;
    this.connect();
  }

  connect() {
    const url = new URL(`ws?clientId=${this.clientId}`, ROOT);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.socket.addEventListener("message", (message) => this.receive(message.data));
    this.socket.addEventListener("close", () => setTimeout(() => this.connect(), 1000));   // reconnect
  }

  receive(data) {
    if (typeof data === "string") {
      const event = JSON.parse(data);
      this.onEvent(event.type, event.data || {});
      return;
    }
    const view = new DataView(data);
    if (view.byteLength < 8 || view.getUint32(0) !== TEXT_EVENT) return;
    const length = view.getUint32(4);
    const decoder = new TextDecoder();
    const node = decoder.decode(new Uint8Array(data, 8, length));
    this.onEvent("progress_text", { node, text: decoder.decode(new Uint8Array(data, 8 + length)) });
  }
}
