"""character_consistency through ComfyUI's real executor: the Loader offers and loads it from a folder with
the official layout, Score / Overlay / Best-of-N give its score, a clip with no character gets no score (a
reason, the total and the ranking over the other dimensions, a blocked FLOAT output), the Character Gallery
node scores against the artist's characters folder, and an older transformers is named by the Loader while the
other dimensions keep working.

Small random Grounding-DINO / SAM2 / recogniser weights of the real classes, written by the test into the
run's models folder (animereward_testkit.character_weights); nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
from animereward_testkit.character_weights import write_character_root, write_user_characters
from animereward_testkit.graph import Graph, output_names
from animereward_testkit.inprocess import WorkflowError
from animereward_testkit.pack import pack_module
from animereward_testkit.reward_workflows import best_of_n, capture, captured, loader, score, synthetic

pytestmark = pytest.mark.comfy

C = "character_consistency"


@pytest.fixture(scope="module")
def folders(comfy, comfy_base_dir):
    models = comfy_base_dir / "models" / "animereward"
    for name, blank in (("characters_ok", False), ("characters_blank", True)):
        if not (models / name).exists():
            write_character_root(models / name, blank=blank)
    users = models / "characters"
    if not users.exists():
        write_user_characters(users)
    return {"ok": "characters_ok", "blank": "characters_blank", "users": users}


def _clips(g: Graph, defects: str = "clean"):
    return g.add(**synthetic(defects, frames=8, width=96, height=64))


def test_the_loader_offers_it_after_the_saved_inputs(comfy) -> None:
    loader_cls = comfy.node_classes["AnimeRewardLoader"]
    spec = loader_cls.INPUT_TYPES()
    assert C in spec["optional"] and C not in spec["required"]
    assert list(spec["optional"])[-1] == C  # after batch_size: saved widget values keep their places
    assert spec["optional"][C][1]["default"] is False  # and off: a saved workflow scores what it scored
    outputs = [names[0] for names in output_names("AnimeRewardScore")]
    assert outputs[-2:] == ["json", C]  # after json: saved links keep their output index
    assert C in comfy.node_classes["AnimeRewardWeights"].INPUT_TYPES()["optional"]


def test_score_overlay_and_best_of_n_give_its_score(comfy, folders) -> None:
    g = Graph()
    clip = _clips(g)
    reward = g.add(**loader(folders["ok"], enabled=(C, "flow_motion"), skip_missing=False))
    s = g.add(**score(frames=clip["images"], reward=reward["reward"]))
    over = g.add("AnimeRewardOverlay", frames=clip["images"], scores_json=s["json"], position="top-left",
                 opacity=1.0, clip_index=0)
    two = _clips(g, "clean, static")
    mine = g.add("AnimeRewardCharacterGallery", reward=reward["reward"], characters="characters")
    best = g.add(**best_of_n(two["images"], two["frames_per_clip"], reward=mine["gallery_reward"], top_k=1))
    c_score = g.add(**capture(float=s[C], string=s["json"]))
    c_over = g.add(**capture(image=over["scored_frames"]))
    c_orig = g.add(**capture(image=clip["images"]))
    c_best = g.add(**capture(string=best["scores_json"]))
    out = comfy.run(g.prompt())

    got = captured(out, c_score)
    data = json.loads(got["string"])
    assert 0.0 < got["float"] <= 1.0 and data["scores"][C] == pytest.approx(got["float"])
    assert data["official"]["character_consist"] == pytest.approx(got["float"]) and data["unscored"] == {}
    shown = comfy.shown_scores(s.id)
    assert shown["labels"][C] == "character" and C in shown["clips"][0]["scores"]
    drawn, orig = captured(out, c_over)["image"], captured(out, c_orig)["image"]
    assert drawn["shape"] == orig["shape"]  # the panel (with the character row) is drawn on every frame
    assert all(abs(a - b) > 1.0 for a, b in zip(drawn["per_item_sum"], orig["per_item_sum"], strict=True))

    ranking = json.loads(captured(out, c_best)["string"])
    assert sorted(ranking["order"]) == [0, 1]
    assert all(C in clip_scores["scores"] for clip_scores in ranking["clips"])
    # the Gallery node's characters folder was used: its embeddings cache lies beside its images
    assert list(folders["users"].glob(".embeddings-*.safetensors"))


def test_a_clip_without_a_character_has_no_score_and_a_reason(comfy, folders) -> None:
    g = Graph()
    clip = _clips(g)
    reward = g.add(**loader(folders["blank"], enabled=(C, "flow_motion"), skip_missing=False))
    s = g.add(**score(frames=clip["images"], reward=reward["reward"]))
    two = _clips(g, "clean, static")
    best = g.add(**best_of_n(two["images"], two["frames_per_clip"], reward=reward["reward"], top_k=1))
    c_score = g.add(**capture(float=s["total"], string=s["json"]))
    c_best = g.add(**capture(string=best["scores_json"], int=best["best_index"]))
    over = g.add("AnimeRewardOverlay", frames=clip["images"], scores_json=s["json"], position="top-left",
                 opacity=1.0, clip_index=0)
    g.add(**capture(image=over["scored_frames"]))
    out = comfy.run(g.prompt())

    got = captured(out, c_score)
    data = json.loads(got["string"])
    assert C not in data["scores"] and "no character detected" in data["unscored"][C]
    assert data["weights"] == {"flow_motion": 1.0} and got["float"] == pytest.approx(data["scores"]["flow_motion"])
    shown = comfy.shown_scores(s.id)  # the page's table: the reason comes with the scores
    assert "no character detected" in shown["clips"][0]["unscored"][C]

    ranking = json.loads(captured(out, c_best)["string"])
    totals = [c["total"] for c in ranking["clips"]]
    assert ranking["order"][0] == captured(out, c_best)["int"] == max(range(2), key=lambda i: totals[i])
    assert all("no character detected" in c["unscored"][C] for c in ranking["clips"])
    assert any(w.startswith(f"{C}: no score for candidates 0, 1") for w in ranking["warnings"])

    # a node wired to the character output does not run, and says why
    s_only = g.add(**capture(float=s[C]))
    with pytest.raises(WorkflowError, match=r"execution blocked: .*no character_consistency score: no character "
                                            r"detected"):
        comfy.run(g.prompt(), outputs=[s_only.id])


def test_an_old_transformers_is_named_by_the_loader_and_the_rest_works(comfy, folders, monkeypatch) -> None:
    tracking = pack_module("animereward.character_tracking")

    def old(module=None):
        raise tracking.CharacterModelsUnavailable(
            f"character_consistency needs transformers >= {tracking.REQUIRED_TRANSFORMERS} (it uses Sam2VideoModel, "
            "Sam2VideoProcessor); this Python has transformers 4.46.3.")

    monkeypatch.setattr(tracking, "transformers_classes", old)
    g = Graph()
    clip = _clips(g)
    reward = g.add(**loader(folders["ok"], enabled=(C, "flow_motion"), skip_missing=True))
    s = g.add(**score(frames=clip["images"], reward=reward["reward"]))
    c = g.add(**capture(float=s["total"]))
    with pytest.raises(WorkflowError) as err:
        comfy.run(g.prompt())
    msg = str(err.value)
    assert "AnimeReward Loader" in msg and f"input '{C}'" in msg and tracking.REQUIRED_TRANSFORMERS in msg and "switch" in msg
    reward.set(**{C: False})  # the other dimensions keep working, with the same folder
    assert 0.0 <= captured(comfy.run(g.prompt()), c)["float"] <= 1.0
    reward.set(**{C: True}, weights="none (flow metrics only)")  # enabled but no files: skipped, no error
    assert 0.0 <= captured(comfy.run(g.prompt()), c)["float"] <= 1.0


def test_the_gallery_node_refuses_a_reward_without_the_dimension(comfy, folders) -> None:
    g = Graph()
    clip = _clips(g)
    reward = g.add(**loader(folders["ok"], enabled=("flow_motion",), skip_missing=False))
    mine = g.add("AnimeRewardCharacterGallery", reward=reward["reward"], characters="characters")
    s = g.add(**score(frames=clip["images"], reward=mine["gallery_reward"]))
    g.add(**capture(float=s["total"]))
    with pytest.raises(WorkflowError, match=r"AnimeReward Character Gallery: input 'reward': "
                                            r"character_consistency is not enabled: it is switched off"):
        comfy.run(g.prompt())
    with pytest.raises(WorkflowError, match=r"input 'characters': 'nobody' is not a folder of characters"):
        mine.set(characters="nobody")
        comfy.run(g.prompt())


def test_lora_comparison_with_clips_that_have_no_total(comfy, folders) -> None:
    """Only character_consistency on and no character found: no total, so no difference (not a made-up 0)."""
    g = Graph()
    two = _clips(g, "clean, static")
    reward = g.add(**loader(folders["blank"], enabled=(C,), skip_missing=False))
    cmp = g.add("AnimeRewardCompareLoRA", reward=reward["reward"], without_lora=two["images"],
                with_lora=two["images"], frames_per_clip=two["frames_per_clip"], sheet_frames=2, skip_unusable=True)
    c = g.add(**capture(string=cmp["json"], image=cmp["sheet"]))
    got = captured(comfy.run(g.prompt()), c)
    data = json.loads(got["string"])
    assert [p["difference"] for p in data["pairs"]] == [None, None] and data["mean_difference"] is None
    assert all(p["with"]["total"] is None and C in p["with"]["unscored"] for p in data["pairs"])
    assert got["image"]["shape"][0] == 1  # the sheet is drawn, the totals as n/a
    blocked = g.add(**capture(float=cmp["mean_difference"]))
    with pytest.raises(WorkflowError, match=r"execution blocked: .*mean_difference.*no seed has a total"):
        comfy.run(g.prompt(), outputs=[blocked.id])
