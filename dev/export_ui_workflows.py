"""Write workflows/ui/<name>.json, the UI-format twin of each workflows/api/<name>.json, as the real ComfyUI
page lays it out.

The page itself converts (app.loadApiJson) and serialises (app.graph.serialize), so the UI files are what
an artist would save. Seeds are set to "fixed" so the examples reproduce. Examples that need no test-only
node are copied to example_workflows/, which ComfyUI's template browser lists.
Run after changing a workflow: `.venv/bin/python dev/export_ui_workflows.py`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO_ROOT / "tests"))

from animereward_testkit import comfy_paths  # noqa: E402
from animereward_testkit.browser import comfy_page  # noqa: E402
from animereward_testkit.server import ComfyServer  # noqa: E402

TEST_ONLY = {"AnimeRewardTestRandomConditioning", "AnimeRewardTestCapture", "AnimeRewardTestClipList"}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        base = comfy_paths.make_base_dir(Path(tmp))
        with ComfyServer(comfy_paths.comfyui_dir(), base, base / "server.log") as server, \
                comfy_page(server.url) as (page, _):
            for api_file in sorted((REPO_ROOT / "workflows" / "api").glob("*.json")):
                name = api_file.stem
                api = json.loads(api_file.read_text())
                page.evaluate("wf => window.app.loadApiJson(wf, 'workflow.json')", api)
                time.sleep(0.5)
                # JSON.stringify in the page drops `undefined` fields; a direct return would turn them into
                # nulls, which the frontend's schema check rejects on load.
                ui = json.loads(page.evaluate("JSON.stringify(window.app.graph.serialize())"))
                for node in ui["nodes"]:
                    node["widgets_values"] = ["fixed" if v == "randomize" else v
                                              for v in node.get("widgets_values", [])]
                text = json.dumps(ui, indent=1)
                (REPO_ROOT / "workflows" / "ui" / f"{name}.json").write_text(text)
                if not {n["class_type"] for n in api.values()} & TEST_ONLY:
                    (REPO_ROOT / "example_workflows").mkdir(exist_ok=True)
                    (REPO_ROOT / "example_workflows" / f"{name}.json").write_text(text)
                print(f"wrote {name}.json ({len(ui['nodes'])} nodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
