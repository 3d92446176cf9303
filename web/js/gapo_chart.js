// AnimeReward: the live training chart on the GAPO LoRA Trainer node.
//
// The server sends one `animereward.training` websocket message per optimizer step (node id, step, total,
// the step's metrics: loss, implicit_accuracy, margin, ...); nothing is polled. The points are drawn on a
// canvas widget of the node (not serialised) in three small panels. The final chart also comes back as the
// node's IMAGE output; this one is for watching a run. The pure functions are exported for the browser test.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

export const EVENT = "animereward.training";
export const NODE_TYPE = "AnimeRewardGAPOTrainer";
const WIDGET = "animereward_training_chart";
export const PANELS = [
  { key: "loss", label: "loss", colour: "#4ea1ff" },
  { key: "implicit_accuracy", label: "accuracy", colour: "#5fd068", fixed: [0, 1] },
  { key: "margin", label: "margin", colour: "#ff6b6b" },
];
const PANEL_H = 54;
// the live series per node id (kept across redraws; a new run of the node clears it)
export const runs = new Map();

export function addPoint(runsMap, detail) {
  // returns the run the point went into (null for messages this chart does not draw)
  if (!detail || detail.node == null) return null;
  const id = String(detail.node);
  let run = runsMap.get(id);
  if (detail.start || !run) {
    run = { total: detail.total ?? 0, points: [], done: false, lora: null };
    runsMap.set(id, run);
  }
  if (detail.total) run.total = detail.total;
  if (detail.metrics) run.points.push({ step: detail.step, ...detail.metrics });
  if (detail.done) {
    run.done = true;
    run.lora = detail.lora_file ?? null;
  }
  return run;
}

export function range(points, key, fixed) {
  if (fixed) return fixed;
  const vals = points.map((p) => p[key]).filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!vals.length) return null;
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  return [lo, hi];
}

function chartWidget(node) {
  return {
    name: WIDGET,
    type: WIDGET,
    value: null,
    serialize: false,
    computeSize(width) {
      return [width, node.animerewardRun ? PANELS.length * (PANEL_H + 6) + 22 : 0];
    },
    draw(ctx, _node, width, y) {
      const run = node.animerewardRun;
      if (!run) return;
      const x0 = 10, w = Math.max(60, width - 20);
      const last = run.points[run.points.length - 1];
      ctx.save();
      ctx.font = "11px sans-serif";
      ctx.fillStyle = "#ddd";
      const head = run.done ? `done: ${run.lora ?? ""}` : `step ${last?.step ?? 0} / ${run.total}`;
      ctx.fillText(head, x0, y + 12);
      PANELS.forEach((p, i) => {
        const top = y + 18 + i * (PANEL_H + 6);
        ctx.strokeStyle = "#555";
        ctx.strokeRect(x0, top, w, PANEL_H);
        ctx.fillStyle = p.colour;
        const value = last?.[p.key];
        ctx.fillText(`${p.label} ${typeof value === "number" ? value.toPrecision(3) : "–"}`, x0 + 4, top + 11);
        const r = range(run.points, p.key, p.fixed);
        if (!r) return;
        ctx.beginPath();
        let started = false;
        for (const pt of run.points) {
          const v = pt[p.key];
          if (typeof v !== "number" || !Number.isFinite(v)) continue;
          const px = x0 + 2 + (run.total > 1 ? (pt.step - 1) / (run.total - 1) : 1) * (w - 4);
          const py = top + PANEL_H - 3 - ((v - r[0]) / (r[1] - r[0])) * (PANEL_H - 16);
          if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
        }
        ctx.strokeStyle = p.colour;
        ctx.lineWidth = 1.5;
        ctx.stroke();
      });
      ctx.restore();
    },
  };
}

function nodeById(id) {
  let graph = app.graph;
  let node = null;
  for (const part of String(id).split(":")) {
    node = graph?.getNodeById?.(Number(part)) ?? graph?.getNodeById?.(part) ?? null;
    graph = node?.subgraph;
  }
  return node;
}

function show(node, run) {
  node.animerewardRun = run;
  if (!node.widgets?.some((w) => w.name === WIDGET)) node.addCustomWidget(chartWidget(node));
  const size = node.computeSize();
  const wanted = [Math.max(node.size[0], size[0], 300), Math.max(node.size[1], size[1])];
  if (wanted[0] !== node.size[0] || wanted[1] !== node.size[1]) node.setSize(wanted);
  node.setDirtyCanvas(true, true);
}

function onTraining({ detail }) {
  const run = addPoint(runs, detail);
  if (!run) return;
  const node = nodeById(detail.node);
  if (node && node.type === NODE_TYPE) show(node, run);
}

app.registerExtension({
  name: "AnimeReward.TrainingChart",
  setup() {
    api.addEventListener(EVENT, onTraining);
  },
});
