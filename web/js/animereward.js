// AnimeReward: show the scores on the Score and Best-of-N nodes after a run.
// The data arrives with the node's "executed" message (its UI output `animereward`); nothing is polled.
// The table is a canvas widget of its own (not serialised), so the node's layout makes room for it and
// a multiline prompt box cannot cover it.
import { app } from "../../../scripts/app.js";

const NODES = new Set(["AnimeRewardScore", "AnimeRewardBestOfN"]);
const WIDGET = "animereward_scores";
const SHORT = {
  visual_smoothness: "smooth", visual_motion: "motion", visual_appeal: "appeal",
  text_video_consistency: "text-vid", image_video_consistency: "img-vid",
  character_consistency: "character", flow_smoothness: "flow-smooth", flow_motion: "flow-motion",
};
const ROW = 16;

export function rowsOf(data) {
  // Score: one row per dimension, then the total. Best-of-N: one row per candidate, best first.
  if (!data || !data.clips || !data.clips.length) return [];
  if (data.order && data.clips.length > 1) {
    return data.order.map((i, rank) => ({ label: `#${rank + 1} clip ${i}`, value: data.clips[i].total, bold: rank === 0 }));
  }
  const clip = data.clips[0];
  const rows = Object.entries(clip.scores).map(([k, v]) => ({ label: SHORT[k] || k, value: v }));
  rows.push({ label: "total", value: clip.total, bold: true });
  return rows;
}

function notesOf(data) {
  const notes = [...(data.warnings || [])];
  if (data.skipped && data.skipped.length) notes.push(`not loaded: ${data.skipped.map((d) => SHORT[d] || d).join(", ")}`);
  return notes;
}

function tableWidget(node) {
  return {
    name: WIDGET,
    type: WIDGET,
    value: null,
    serialize: false,
    computeSize(width) {
      const data = node.animerewardScores;
      const lines = data ? rowsOf(data).length + notesOf(data).length : 0;
      return [width, lines ? lines * ROW + 8 : 0];
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
        ctx.fillStyle = r.bold ? "#fff" : "#6ab4ff";
        ctx.fillRect(barX, top + 3, barW * Math.max(0, Math.min(1, r.value)), ROW - 6);
        ctx.fillStyle = "#ddd";
        ctx.fillText(r.value.toFixed(3), barX + barW + 6, top + 11);
      });
      ctx.font = "11px sans-serif";
      ctx.fillStyle = "#fb4";
      notesOf(data).forEach((w, i) => ctx.fillText(w, 10, y + 4 + (rows.length + i) * ROW + 11));
      ctx.restore();
    },
  };
}

app.registerExtension({
  name: "AnimeReward.ScoreTable",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const data = message?.animereward?.[0];
      if (!data) return;
      this.animerewardScores = data;
      if (!this.widgets?.some((w) => w.name === WIDGET)) this.addCustomWidget(tableWidget(this));
      const size = this.computeSize();
      this.setSize([Math.max(this.size[0], size[0], 280), Math.max(this.size[1], size[1])]);
      this.setDirtyCanvas(true, true);
    };
  },
});
