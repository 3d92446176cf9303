"""Write workflows/ui/<name>.json, the UI-format twin of each workflows/api/<name>.json, as the real ComfyUI
page lays it out, and the template-browser copies of the shipped examples with their thumbnails.

The page itself converts (app.loadApiJson) and serialises (app.graph.serialize), so the UI files are what an
artist would save. On top of that:
- nodes are laid out in columns by their distance from the sources, ordered to keep wires short, with the
  save nodes large enough to show their previews at a readable size;
- a Markdown note says what the example does and which files it needs (NOTES);
- the saved view (extra.ds) is dropped, so the page fits the graph to the window when it opens;
- seeds are set to "fixed" so the examples reproduce.
Examples with a title in TEMPLATE_TITLES go to example_workflows/<title>.json (ComfyUI's template browser
lists them under that title) with a `<title>.jpg` thumbnail made from the example's real output (runnable
examples) or from the framed graph in the page (the others need models this machine does not have).
Run after changing a workflow: `.venv/bin/python dev/export_ui_workflows.py` (about a minute), or with
workflow names (`... dev/export_ui_workflows.py train_gapo_lora compare_lora`) to export only those.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.extend([str(REPO_ROOT), str(REPO_ROOT / "tests")])  # the root first: tests/animereward is a test folder

from animereward_testkit import comfy_paths  # noqa: E402
from animereward_testkit.browser import comfy_page  # noqa: E402
from animereward_testkit.example_inputs import write_example_inputs  # noqa: E402
from animereward_testkit.server import ComfyServer  # noqa: E402
from animereward_testkit.templates import RUNNABLE, TEMPLATE_DIR, TEMPLATE_TITLES  # noqa: E402

THUMB_SIZE = (512, 384)
SAVE_NODES = {"SaveImage", "SaveAnimatedWEBP", "SaveVideo", "PreviewImage"}
WAN_FILES = """| file (Hugging Face `Comfy-Org/Wan_2.1_ComfyUI_repackaged`, `split_files/…`) | put it in `ComfyUI/models/…` |
|---|---|
| `diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors` | `diffusion_models/` |
| `text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors` | `text_encoders/` |
| `clip_vision/clip_vision_h.safetensors` | `clip_vision/` |
| `vae/wan_2.1_vae.safetensors` | `vae/` |"""
REWARD_FILES = ("AnimeReward weights (optional): Hugging Face `IndexTeam/Index-anisora`, folder `reward/`, into "
                "`ComfyUI/models/animereward/anisora/` keeping its layout; then pick `anisora` in the Loader and "
                "switch its model dimensions on.")
NOTES = {
    "synthetic_best_of_n": f"""## Best of N on synthetic clips: no model needed
Four candidates of the same cel-style scene, three with a defect (flicker, jitter, freeze), are scored with
the two optical-flow metrics, which need no weights. **Best-of-N** orders them best first (the clean one,
index 2, should win) and passes the winner on.

Press **Run**: the ranking shows on the Best-of-N node, the winner's scores on the Score node. Saved to
`output/animereward/`: the best clip, the best clip with its score panel, and the contact sheet.

{REWARD_FILES}""",
    "score_video_overlay": f"""## Score a video and draw the scores on it: no model needed
Loads a clip, scores it with the optical-flow metrics, draws the score panel on every frame and saves the
video to `output/animereward/`.

Needs: a video in `ComfyUI/input/`, chosen in **Load Video** (the example names `animereward_example.mp4`).
Write the clip's prompt in the Score node: the text dimensions use it when their weights are loaded.

{REWARD_FILES}""",
    "wan_i2v_best_of_n": f"""## Wan 2.1 image to video, best of 4
Generates 4 candidates from one start image and prompt (`batch_size` 4 on WanImageToVideo), decodes them,
and keeps the best by AnimeReward: the winner is saved with the contact sheet of all four.
A GPU with about 24 GB of memory runs the 14B fp16 model.

{WAN_FILES}

Start image: any picture in `ComfyUI/input/`, chosen in **Load Image**.
{REWARD_FILES.replace(" (optional)", "").replace("; then pick `anisora` in the Loader and switch its model dimensions on.", ". Without them pick `none (flow metrics only)` in the Loader.")}""",
}
NOTES["collect_rankings"] = f"""## Wan 2.1 best of 4, collected for ranking
The Wan best-of-4 graph, plus **AnimeReward Collect**: each run stores the 4 candidates (latents,
conditioning, scores, previews) as a group of the dataset `wan_i2v_rankings`. Rank groups in the **Rank**
tab of the side bar; the GAPO trainer learns from your rankings.

{WAN_FILES}

Start image: any picture in `ComfyUI/input/`, chosen in **Load Image**.
{REWARD_FILES}"""
NOTES["synthetic_collect_rankings"] = """## Collect synthetic candidates for ranking
Four synthetic candidates, ranked by Best-of-N with the flow metrics, stored by **AnimeReward Collect** as a
group of the dataset `synthetic_rankings` (the VAE encodes the frames into latents). Rank the group in the
**Rank** tab of the side bar: a way to try the ranking panel without a video model.

Needs: `wan_2.1_vae.safetensors` (Hugging Face `Comfy-Org/Wan_2.1_ComfyUI_repackaged`, `split_files/vae/`) in
`ComfyUI/models/vae/`."""
NOTES["train_gapo_lora"] = """## Train a GAPO LoRA on your rankings
**GAPO LoRA Trainer** reads the groups of the dataset `wan_i2v_rankings` (collected with the *Wan 2.1 best of 4,
collected for ranking* example and ranked in the **Rank** tab: your order overrides the reward's) and trains
a LoRA on the Wan model with Gap-Aware Preference Optimization. The loss chart is saved; the LoRA goes to
`ComfyUI/models/loras/gapo/` (its name shows on the node). Cancel keeps a checkpoint: queue again with
**resume** on to continue. Then open *Wan 2.1 with and without your LoRA* to see what it changed.

Needs: the dataset (at least one ranked group) and the model it was collected with:
`wan2.1_i2v_480p_14B_fp16.safetensors` (Hugging Face `Comfy-Org/Wan_2.1_ComfyUI_repackaged`,
`split_files/diffusion_models/`) in `ComfyUI/models/diffusion_models/`. The example loads it as fp8 (half
the memory of fp16; the LoRA itself trains in float32) with gradient checkpointing on. The settings are
explained on the node's help page (**?**)."""
NOTES["compare_lora"] = f"""## Wan 2.1 with and without your LoRA, scored side by side
Two KSamplers with the same seed, prompt and start image, one on the base model and one through
**LoraLoaderModelOnly** with the LoRA the trainer wrote (`gapo/anime_gapo.safetensors`; pick yours after
pressing R). **AnimeReward LoRA Comparison** scores both batches of 2 clips and saves a sheet with each
seed's clip without the LoRA above its clip with it, and the difference of the totals.

{WAN_FILES}

Start image: any picture in `ComfyUI/input/`, chosen in **Load Image**. The LoRA: from the *train a GAPO
LoRA* example, in `ComfyUI/models/loras/`.
{REWARD_FILES}"""
TEST_ONLY = {"AnimeRewardTestRandomConditioning", "AnimeRewardTestCapture", "AnimeRewardTestClipList"}


def columns(api: dict) -> list[list[str]]:
    """Node ids in columns by longest distance from a source, each column ordered by where its inputs sit."""
    depth: dict[str, int] = {}

    def d(nid: str) -> int:
        if nid not in depth:
            srcs = [v[0] for v in api[nid]["inputs"].values() if isinstance(v, list) and len(v) == 2]
            depth[nid] = 1 + max((d(s) for s in srcs), default=-1)
        return depth[nid]

    for nid in api:
        d(nid)
    for nid in api:  # a source (loader) sits just before its first consumer, not at the far left
        consumers = [depth[m] for m, node in api.items()
                     if any(isinstance(v, list) and len(v) == 2 and v[0] == nid for v in node["inputs"].values())]
        if depth[nid] == 0 and consumers:
            depth[nid] = min(consumers) - 1
    cols: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    row: dict[str, float] = {}
    for c, col in enumerate(cols):
        members = sorted((n for n in api if depth[n] == c), key=int)
        if c:
            def centre(n: str) -> float:
                srcs = [row[v[0]] for v in api[n]["inputs"].values() if isinstance(v, list) and len(v) == 2]
                return sum(srcs) / len(srcs) if srcs else 0.0

            # nodes whose outputs go on first, then the sinks (save nodes): wires stay short and do not cross
            feeds = {v[0] for m in api.values() for v in m["inputs"].values() if isinstance(v, list) and len(v) == 2}
            members.sort(key=lambda n: (n not in feeds, centre(n)))
        col.extend(members)
        for i, n in enumerate(col):
            row[n] = i
    return cols


LAYOUT_JS = """([cols, note, saveNodes]) => {
  const g = window.app.graph;
  const gap = 40;
  let x = 40, top = 40;
  if (note) {  // above the first column, where reading starts
    const n = window.LiteGraph.createNode("MarkdownNote");
    n.widgets[0].value = note;
    n.pos = [x, 40];
    n.size = [480, 330];
    g.add(n);
    top += 330 + gap;
  }
  for (const [c, col] of cols.entries()) {
    let y = c === 0 ? top : 40, width = c === 0 && note ? 480 : 0;
    for (const id of col) {
      const node = g.getNodeById(Number(id));
      if (saveNodes.includes(node.type)) node.size = [Math.max(node.size[0], 360), node.size[1] + 260];
      node.pos = [x, y];
      y += node.size[1] + gap;
      width = Math.max(width, node.size[0]);
    }
    x += width + gap;
  }
  g.setDirtyCanvas(true, true);
}"""


def export(page, name: str, api: dict) -> dict:
    page.evaluate("wf => window.app.loadApiJson(wf, 'workflow.json')", api)
    page.wait_for_function("n => window.app.graph._nodes.length === n", arg=len(api))
    page.evaluate(LAYOUT_JS, [columns(api), NOTES.get(name), sorted(SAVE_NODES)])
    # JSON.stringify in the page drops `undefined` fields; a direct return would turn them into nulls,
    # which the frontend's schema check rejects on load.
    ui = json.loads(page.evaluate("JSON.stringify(window.app.graph.serialize())"))
    ui.get("extra", {}).pop("ds", None)  # no saved view: the page fits the graph to the window on load
    for node in ui["nodes"]:
        node["widgets_values"] = ["fixed" if v == "randomize" else v for v in node.get("widgets_values", [])]
    return ui


GRAPH_BOX_JS = """() => {  // the nodes' bounding box on the screen, a little margin around it
  const c = window.app.canvas, r = c.canvas.getBoundingClientRect(), ns = window.app.graph._nodes;
  const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1] - 30));
  const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
  const [sx0, sy0] = c.ds.convertOffsetToCanvas([x0, y0]), [sx1, sy1] = c.ds.convertOffsetToCanvas([x1, y1]);
  return {x: r.left + sx0 - 8, y: r.top + sy0 - 8, width: sx1 - sx0 + 16, height: sy1 - sy0 + 16};
}"""


def thumbnail(server: ComfyServer, page, name: str, ui: dict, out: Path) -> None:
    """A JPEG of the example's real output (run in the page), or of its framed graph when it cannot run here."""
    from PIL import Image

    page.evaluate("wf => window.app.loadGraphData(wf, true, true, 'thumbnail')", ui)
    page.wait_for_timeout(500)  # the page fits the view on the next animation frame
    if name not in RUNNABLE:
        page.evaluate("window.app.extensionManager.setting.set('Comfy.Minimap.Visible', false)")
        page.wait_for_timeout(300)
        box = page.evaluate(GRAPH_BOX_JS)
        image = Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")
    else:
        before = set(server.get("/history"))
        page.evaluate("window.app.queuePrompt(0, 1)")
        deadline = time.monotonic() + 300
        while not (set(server.get("/history")) - before) and time.monotonic() < deadline:
            time.sleep(0.5)
        (prompt_id,) = set(server.get("/history")) - before
        entry = server.wait(prompt_id)
        files = [i for o in entry["outputs"].values() for k, v in o.items() if k != "animated" for i in v]
        pick = next((f for f in files if "contact_sheet" in f["filename"]), None) or files[-1]
        path = server.base_dir / "output" / pick["subfolder"] / pick["filename"]
        if path.suffix == ".mp4":
            import av

            with av.open(str(path)) as container:
                frames = [f.to_image() for f in container.decode(video=0)]
            image = frames[len(frames) // 2]
        else:
            image = Image.open(path).convert("RGB")
    image.thumbnail(THUMB_SIZE)
    canvas = Image.new("RGB", THUMB_SIZE, (24, 24, 28))
    canvas.paste(image, ((THUMB_SIZE[0] - image.width) // 2, (THUMB_SIZE[1] - image.height) // 2))
    canvas.save(out, quality=88)


def main(names: list[str]) -> int:
    api_files = sorted((REPO_ROOT / "workflows" / "api").glob("*.json"))
    unknown = set(names) - {f.stem for f in api_files}
    if unknown:
        raise SystemExit(f"no workflows/api/<name>.json for {sorted(unknown)}")
    api_files = [f for f in api_files if not names or f.stem in names]
    with tempfile.TemporaryDirectory() as tmp:
        base = comfy_paths.make_base_dir(Path(tmp))
        write_example_inputs(base / "input")
        with ComfyServer(comfy_paths.comfyui_dir(), base, base / "server.log") as server, \
                comfy_page(server.url) as (page, _):
            TEMPLATE_DIR.mkdir(exist_ok=True)
            for api_file in api_files:
                name = api_file.stem
                api = json.loads(api_file.read_text())
                ui = export(page, name, api)
                text = json.dumps(ui, indent=1)
                (REPO_ROOT / "workflows" / "ui" / f"{name}.json").write_text(text)
                title = TEMPLATE_TITLES.get(name)
                if title and not {n["class_type"] for n in api.values()} & TEST_ONLY:
                    (TEMPLATE_DIR / f"{title}.json").write_text(text)
                    thumbnail(server, page, name, ui, TEMPLATE_DIR / f"{title}.jpg")
                print(f"wrote {name}.json ({len(ui['nodes'])} nodes){f' and template {title!r}' if title else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
