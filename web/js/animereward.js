// AnimeReward: the score table on the Score and Best-of-N nodes.
//
// The scores arrive as an `animereward.scores` websocket message, not as a UI output: frontend 1.32 lists
// every item of a job's UI outputs as a file in its queue sidebar. So the page's own output store (which
// keeps image previews per workflow tab) does not hold them, and this file keeps them itself:
// - per workflow tab (its path) and node, in `ScoreMemory`, mirrored to sessionStorage, so a table comes
//   back after a tab switch or a page reload (both rebuild the nodes);
// - a table is cleared when its node starts running again, or fails.
// The table is a canvas widget of its own (not serialised), so the node's layout makes room for it and a
// multiline prompt box cannot cover it. The pure functions are exported for the browser tests.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

export const EVENT = "animereward.scores";
export const NODES = new Set(["AnimeRewardScore", "AnimeRewardBestOfN"]);
export const STORAGE_KEY = "animereward.scores.v1";
const WIDGET = "animereward_scores";
// Dimension labels come from the server with the scores (`labels`, read off the Python registry of
// dimensions), so a dimension added there shows here with no change to this file.
const labelOf = (data, name) => (data.labels && data.labels[name]) || name;
export const ROW = 16;
const MAX_WORKFLOWS = 32; // sessionStorage is small: forget the oldest tabs first

export function rowsOf(data) {
  // Score: one row per dimension, then the total. Best-of-N: one row per candidate, best first.
  if (!data || !data.clips || !data.clips.length) return [];
  if (data.order && data.clips.length > 1) {
    return data.order.map((i, rank) => ({ label: `#${rank + 1} clip ${i}`, value: data.clips[i].total, bold: rank === 0 }));
  }
  const clip = data.clips[0];
  // a dimension without a score for this clip (e.g. no character found) shows "n/a"; its reason is a note
  const rows = Object.entries(clip.scores).map(([k, v]) => ({ label: labelOf(data, k), value: v }));
  for (const k of Object.keys(clip.unscored || {})) rows.push({ label: labelOf(data, k), value: null });
  rows.push({ label: "total", value: clip.total ?? null, bold: true });
  return rows;
}

export function notesOf(data) {
  if (!data) return [];
  const notes = [...(data.warnings || [])];
  if (data.clips?.length === 1) {
    for (const [k, why] of Object.entries(data.clips[0].unscored || {})) notes.push(`${labelOf(data, k)}: no score (${why})`);
  }
  if (data.skipped && data.skipped.length) notes.push(`not loaded: ${data.skipped.map((d) => labelOf(data, d)).join(", ")}`);
  return notes;
}

export function tableHeight(data) {
  const lines = data ? rowsOf(data).length + notesOf(data).length : 0;
  return lines ? lines * ROW + 8 : 0;
}

export class ScoreMemory {
  // {workflow path: {node id: {type, scores}}}, newest workflow last; `storage` is sessionStorage or null.
  constructor(storage, key = STORAGE_KEY) {
    this.storage = storage;
    this.key = key;
    this.byWorkflow = {};
    try {
      this.byWorkflow = JSON.parse(storage?.getItem(key) || "{}") || {};
    } catch {
      this.byWorkflow = {};
    }
  }

  get(path, nodeId, type) {
    const entry = this.byWorkflow[path]?.[nodeId];
    return entry && (!type || !entry.type || entry.type === type) ? entry.scores : null;
  }

  set(path, nodeId, type, scores) {
    const tab = this.byWorkflow[path] || {};
    delete this.byWorkflow[path];
    tab[nodeId] = { type, scores };
    this.byWorkflow[path] = tab;
    const paths = Object.keys(this.byWorkflow);
    for (const old of paths.slice(0, Math.max(0, paths.length - MAX_WORKFLOWS))) delete this.byWorkflow[old];
    this.save();
  }

  clear(path, nodeId) {
    if (!this.byWorkflow[path]?.[nodeId]) return;
    delete this.byWorkflow[path][nodeId];
    if (!Object.keys(this.byWorkflow[path]).length) delete this.byWorkflow[path];
    this.save();
  }

  save() {
    try {
      this.storage?.setItem(this.key, JSON.stringify(this.byWorkflow));
    } catch {
      // storage full or unavailable: the tables still live until the tab changes
    }
  }
}

export const memory = new ScoreMemory(typeof sessionStorage === "undefined" ? null : sessionStorage);
const promptPaths = new Map(); // prompt id → path of the workflow tab it was queued from
let runningPath = null; // the workflow of the prompt being executed

function activePath() {
  return app.extensionManager?.workflow?.activeWorkflow?.path ?? "";
}

function nodeByExecutionId(id) {
  // "12" is a node of the root graph; "5:12" is node 12 inside subgraph node 5
  let graph = app.graph;
  let node = null;
  for (const part of String(id).split(":")) {
    node = graph?.getNodeById?.(Number(part)) ?? graph?.getNodeById?.(part) ?? null;
    graph = node?.subgraph;
  }
  return node;
}

function locatorOf(node) {
  // the execution id of a node of the root graph (nodes inside subgraphs are found through their parents)
  return String(node.id);
}

function tableWidget(node) {
  return {
    name: WIDGET,
    type: WIDGET,
    value: null,
    serialize: false,
    computeSize(width) {
      return [width, tableHeight(node.animerewardScores)];
    },
    draw(ctx, _node, width, y) {
      const data = node.animerewardScores;
      if (!data) return;
      const rows = rowsOf(data);
      const barX = 96, barW = Math.max(40, width - barX - 56);
      ctx.save();
      rows.forEach((r, i) => {
        const top = y + 4 + i * ROW;
        ctx.font = r.bold ? "bold 11px sans-serif" : "11px sans-serif";
        ctx.fillStyle = "#ddd";
        ctx.fillText(r.label, 10, top + 11);
        ctx.fillStyle = "#444";
        ctx.fillRect(barX, top + 3, barW, ROW - 6);
        const known = typeof r.value === "number";
        ctx.fillStyle = r.bold ? "#fff" : "#6ab4ff";
        if (known) ctx.fillRect(barX, top + 3, barW * Math.max(0, Math.min(1, r.value)), ROW - 6);
        ctx.fillStyle = "#ddd";
        ctx.fillText(known ? r.value.toFixed(3) : "n/a", barX + barW + 6, top + 11);
      });
      ctx.font = "11px sans-serif";
      ctx.fillStyle = "#fb4";
      notesOf(data).forEach((w, i) => ctx.fillText(w, 10, y + 4 + (rows.length + i) * ROW + 11));
      ctx.restore();
    },
  };
}

function showTable(node, data) {
  // data null: no table (the widget stays, with no height)
  node.animerewardScores = data || null;
  if (data && !node.widgets?.some((w) => w.name === WIDGET)) node.addCustomWidget(tableWidget(node));
  if (data) {
    const size = node.computeSize();
    const wanted = [Math.max(node.size[0], size[0], 280), Math.max(node.size[1], size[1])];
    if (wanted[0] !== node.size[0] || wanted[1] !== node.size[1]) node.setSize(wanted);
  }
  node.setDirtyCanvas(true, true);
}

function syncWithTab(node) {
  // Nodes are rebuilt on every tab switch and reload: take this tab's table from memory once per tab.
  const path = activePath();
  if (node.animerewardPath === path) return;
  node.animerewardPath = path;
  const data = memory.get(path, locatorOf(node), node.type);
  if (data || node.animerewardScores) showTable(node, data);
}

function onScores({ detail }) {
  if (!detail?.node || !detail.scores) return;
  const path = promptPaths.get(detail.prompt_id) ?? runningPath ?? activePath();
  const node = path === activePath() ? nodeByExecutionId(detail.node) : null;
  const type = node?.type ?? memory.byWorkflow[path]?.[detail.node]?.type ?? null; // null: any
  if (node && !NODES.has(node.type)) return;
  memory.set(path, String(detail.node), type, detail.scores);
  if (node) {
    node.animerewardPath = path;
    showTable(node, detail.scores);
  }
}

function forget(nodeId) {
  // the node runs again (or failed): its old table no longer describes its inputs
  if (nodeId == null) return;
  const path = runningPath ?? activePath();
  memory.clear(path, String(nodeId));
  if (path !== activePath()) return;
  const node = nodeByExecutionId(nodeId);
  if (node && NODES.has(node.type) && node.animerewardScores) showTable(node, null);
}

app.registerExtension({
  name: "AnimeReward.ScoreTable",
  setup() {
    // Which tab queued each prompt: the frontend's own record of it is not reachable from extensions.
    const queuePrompt = api.queuePrompt.bind(api);
    api.queuePrompt = async (...args) => {
      const path = activePath();
      const res = await queuePrompt(...args);
      if (res?.prompt_id) promptPaths.set(res.prompt_id, path);
      return res;
    };
    api.addEventListener(EVENT, onScores);
    api.addEventListener("execution_start", ({ detail }) => {
      runningPath = promptPaths.get(detail?.prompt_id) ?? activePath();
    });
    api.addEventListener("executing", ({ detail }) => {
      if (detail == null) runningPath = null; // the prompt is done
      else forget(typeof detail === "object" ? detail.node : detail);
    });
    api.addEventListener("execution_error", ({ detail }) => forget(detail?.node_id));
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function () {
      syncWithTab(this);
      return onDrawForeground?.apply(this, arguments);
    };
  },
});
