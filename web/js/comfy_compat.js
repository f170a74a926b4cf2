// Likeness: the one place that knows how the ComfyUI frontends differ. Every widget goes through it.
// Tested on frontend 1.32.9 (ComfyUI 0.3.75) and 1.49.6 (ComfyUI 0.33.0), classic canvas and Nodes 2.0.
//
//   import { allNodes, hideWidget, nodeForEvent, onNodeOutput, rootGraph } from "./comfy_compat.js";
//   onNodeOutput("executed", (node, detail) => ...)    a server event's node, at top level or in a subgraph
//   for (const { node, executionId } of allNodes()) ... every node, subgraphs included, with the id the
//                                                     server knows it by ("12:5" inside subgraph node 12)
//   hideWidget(widget)                                 hidden on the canvas and in Nodes 2.0
//
// What differs, and why each helper exists:
// - `app.graph` is deprecated for `app.rootGraph` (1.49), which logs an error when read before the graph exists.
// - `graph._nodes` is private from 1.49; `graph.nodes` is the public list (1.32.9 may lack it).
// - A node inside a subgraph runs on the server as "<subgraph node id>:<node id>" (nested: "12:5:3"), and an
//   event names it so (`display_node`, else `node`): `getNodeById(Number("12:5"))` finds nothing.
// - Node ids of new nodes are strings in 1.49 and numbers in 1.32.9: compare them as strings.
// - Nodes 2.0 (Vue nodes) reads `widget.options.hidden`; the classic canvas reads `widget.hidden`.
// No side effects: the frontend imports every .js of the pack as an extension, and this one only exports.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

// The root graph, or null before the app has one (without the error 1.49 logs for an early read).
export function rootGraph() {
  if ("isGraphReady" in app) return app.isGraphReady ? app.rootGraph : null;
  return app.graph ?? null;                         // 1.32.9: its rootGraph getter logs that error too
}

export function nodesOf(graph) {
  return graph?.nodes ?? graph?._nodes ?? [];
}

function subgraphOf(node) {
  return (node?.isSubgraphNode?.() ?? Boolean(node?.subgraph)) ? node.subgraph ?? null : null;
}

// Every node of the root graph and of the subgraphs inside it, each with its execution id. A subgraph used by two
// subgraph nodes shares its inner nodes: such a node comes once per subgraph node, with each execution id.
export function allNodes(graph = rootGraph()) {
  const found = [];
  const walk = (g, prefix, seen) => {
    for (const node of nodesOf(g)) {
      const executionId = prefix ? `${prefix}:${node.id}` : String(node.id);
      found.push({ node, executionId });
      const inner = subgraphOf(node);
      if (inner && !seen.has(inner)) walk(inner, executionId, new Set([...seen, inner]));
    }
  };
  if (graph) walk(graph, "", new Set([graph]));
  return found;
}

// The node the server means by an execution id: "7" at top level, "12:5" inside subgraph node 12.
export function nodeByExecutionId(executionId, graph = rootGraph()) {
  if (!graph || executionId === null || executionId === undefined) return null;
  const id = String(executionId);
  if (typeof graph.getNodeByExecutionId === "function") return graph.getNodeByExecutionId(id) ?? null;
  const path = id.split(":");
  let current = graph;
  for (const [i, part] of path.entries()) {
    const node = current?.getNodeById(part) ?? current?.getNodeById(Number(part));
    if (i === path.length - 1) return node ?? null;
    current = subgraphOf(node);
  }
  return null;
}

// The node a server event is about (`executed` carries `display_node`; the pack's own events carry `node`).
export function nodeForEvent(detail) {
  return nodeByExecutionId(detail?.display_node ?? detail?.node);
}

// Calls back with the node a server event names (and the event), wherever that node sits.
export function onNodeOutput(eventName, callback) {
  api.addEventListener(eventName, ({ detail }) => {
    const node = nodeForEvent(detail);
    if (node) callback(node, detail);
  });
}

export function sameNodeId(a, b) {
  return a !== null && a !== undefined && String(a) === String(b);
}

// Hides a widget the pack draws in its own way (the raw value stays in the workflow).
export function hideWidget(widget) {
  if (!widget) return;
  widget.hidden = true;
  widget.options = widget.options ?? {};
  widget.options.hidden = true;
}

// Marks the canvas for redraw, in whichever graph the user is looking at.
export function redrawCanvas() {
  app.canvas?.setDirty?.(true, true);
  (app.canvas?.graph ?? rootGraph())?.setDirtyCanvas?.(true, true);
}

// A pack panel (a DOM element) drawn on `node` as a widget that is never saved into the workflow; `minHeight`
// keeps room for it. `serialize` is read from the options by some frontends and from the widget by others.
export function addPanelWidget(node, name, type, root, minHeight) {
  const options = { serialize: false, ...(minHeight ? { getMinHeight: minHeight } : {}) };
  const widget = node.addDOMWidget(name, type, root, options);
  widget.serialize = false;
  return widget;
}
