"""Best-of-N end to end over the real HTTP server, on the tiny Wan 2.1 models; errors leave the server serving."""

from __future__ import annotations

import copy

import pytest
from animereward_testkit.graph import link
from animereward_testkit.reward_workflows import capture, example, example_node, saved
from PIL import Image

pytestmark = pytest.mark.comfy


def test_tiny_wan_best_of_n_over_http(comfy_server, comfy_base_dir):
    wf = example("tiny_wan_best_of_n")
    best_of_n, sampler = example_node(wf, "AnimeRewardBestOfN"), example_node(wf, "KSampler")
    wf["c"] = capture(int=link(wf, best_of_n, "best_index"), latent=link(wf, best_of_n, "best_latent"))
    wf["d"] = capture(latent=link(wf, sampler, "LATENT"))
    entry = comfy_server.run(wf)
    out = entry["outputs"]
    best = out["c"]["captured"][0]["int"]
    assert 0 <= best < 3
    best_latent = out["c"]["captured"][0]["latent"]["latent"]
    all_latents = out["d"]["captured"][0]["latent"]["latent"]
    assert all_latents["shape"][0] == 3 and best_latent["shape"] == [1, *all_latents["shape"][1:]]
    assert best_latent["sum"] == pytest.approx(all_latents["per_item_sum"][best], rel=1e-6)
    # the scores reach the page as a message of their own: the job's outputs (what the queue sidebar lists
    # as files) hold files only
    for node, ui in out.items():
        if entry["prompt"][2][node]["class_type"].startswith("AnimeRewardTest"):
            continue
        for key, items in ui.items():
            assert key == "animated" or all(isinstance(i, dict) and i.get("filename") for i in items), (node, key)
    webps = {p.parent.name + "/" + p.name.split("_0")[0]: p for n in wf if wf[n]["class_type"] == "SaveAnimatedWEBP"
             for p in saved(out, n, comfy_base_dir)}
    with Image.open(webps["animereward_tiny/best"]) as im:
        assert im.n_frames == 9
    redecoded = webps["animereward_tiny/best_redecoded"]
    with Image.open(redecoded) as im:
        assert im.n_frames == 9  # the best latent decodes back to a clip


def test_failed_run_reports_node_and_server_keeps_serving(comfy_server):
    wf = example("tiny_wan_best_of_n")
    bad = copy.deepcopy(wf)
    bad[example_node(bad, "AnimeRewardBestOfN")]["inputs"]["frames_per_clip"] = 4  # 27 frames: not a multiple of 4
    status, body = comfy_server.queue(bad)
    assert status == 200
    entry = comfy_server.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    err = next(d for e, d in entry["status"]["messages"] if e == "execution_error")
    assert err["node_type"] == "AnimeRewardBestOfN"
    assert "frames_per_clip=4" in err["exception_message"] and "Fix:" in err["exception_message"]
    # the server is still up and runs the next prompt
    assert comfy_server.run(wf)["status"]["status_str"] == "success"
