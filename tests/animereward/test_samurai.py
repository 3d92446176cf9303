"""SAMURAI on transformers' Sam2VideoModel (animereward/samurai.py): the Kalman filter against hand-computed
values, the mask choice and the memory choice as pure functions, and the same choices made inside a real (small,
random) Sam2VideoModel: the model attends exactly the chosen memory frames, emits exactly the chosen proposal,
and is left as it was afterwards (plain SAM2 tracking unchanged)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from animereward_testkit.motion_clips import (
    crossing_simulation,
    fast_motion_clip,
    lively_tracker,
    occlusion_clip,
)

from animereward.character_tracking import (
    REQUIRED_TRANSFORMERS,
    CharacterModelsUnavailable,
    track_characters,
    transformers_classes,
)
from animereward.samurai import (
    EMPTY_BOX,
    FrameScores,
    KalmanBoxFilter,
    ObjectMotion,
    SamuraiConfig,
    SamuraiTracking,
    box_iou,
    choose_mask,
    mask_box,
    memory_frames,
    xyah_to_xyxy,
    xyxy_to_xyah,
)

# --- plain numbers ------------------------------------------------------------------------------------------


def test_official_constants() -> None:
    c = SamuraiConfig()  # configs/samurai/sam2.1_hiera_b+.yaml, the official AnimeReward's tracker config
    assert (c.stable_frames_threshold, c.stable_ious_threshold, c.min_obj_score_logits, c.kf_score_weight) == (
        15, 0.3, -1.0, 0.25)
    assert (c.memory_bank_iou_threshold, c.memory_bank_obj_score_threshold) == (0.5, 0.0)
    assert c.memory_bank_kf_score_threshold is None  # named 0.0 in the config, never applied by its code


def test_box_conversions_and_iou() -> None:
    assert xyxy_to_xyah((10, 20, 30, 60)).tolist() == [20, 40, 0.5, 40]
    assert xyah_to_xyxy([20, 40, 0.5, 40]) == (10, 20, 30, 60)
    assert xyxy_to_xyah(EMPTY_BOX).tolist() == [0, 0, 0, 1]  # zero height counts as 1
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), EMPTY_BOX) == 0.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    m = torch.zeros(8, 9, dtype=torch.bool)
    assert mask_box(m) == EMPTY_BOX
    m[2:5, 3:7] = True
    assert mask_box(m) == (3, 2, 6, 4)  # inclusive max corner


def test_kalman_filter_against_hand_computed_steps() -> None:
    kf = KalmanBoxFilter()
    mean, cov = kf.initiate(np.array([50.0, 40.0, 0.5, 20.0]))
    # h = 20: position std 2·20/20 = 2, velocity std 10·20/160 = 1.25, aspect 1e-2 / 1e-5
    assert mean.tolist() == [50, 40, 0.5, 20, 0, 0, 0, 0]
    assert np.allclose(np.diag(cov), [4, 4, 1e-4, 4, 1.5625, 1.5625, 1e-10, 1.5625])
    mean, cov = kf.predict(mean, cov)
    # var(x) = 4 + var(vx) 1.5625 + process (20/20)² = 6.5625; cov(x, vx) = 1.5625; var(vx) = 1.5625 + (20/160)²
    assert mean.tolist() == [50, 40, 0.5, 20, 0, 0, 0, 0]
    assert cov[0, 0] == pytest.approx(6.5625) and cov[0, 4] == pytest.approx(1.5625)
    assert cov[4, 4] == pytest.approx(1.578125)
    mean, cov = kf.update(mean, cov, np.array([53.0, 40.0, 0.5, 20.0]))
    # innovation variance S = 6.5625 + (20/20)² = 7.5625; gains 6.5625/S on x, 1.5625/S on vx
    assert mean[0] == pytest.approx(50 + 3 * 6.5625 / 7.5625)
    assert mean[4] == pytest.approx(3 * 1.5625 / 7.5625)
    assert mean[[1, 2, 3, 5, 6, 7]].tolist() == pytest.approx([40, 0.5, 20, 0, 0, 0])
    assert cov[0, 0] == pytest.approx(6.5625 / 7.5625)
    mean, _ = kf.predict(mean, cov)
    assert mean[0] == pytest.approx(50 + 3 * (6.5625 + 1.5625) / 7.5625)


def test_kalman_filter_learns_a_constant_velocity() -> None:
    kf = KalmanBoxFilter()
    mean, cov = kf.initiate(xyxy_to_xyah((0, 10, 20, 50)))
    for t in range(1, 15):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, xyxy_to_xyah((4 * t, 10, 20 + 4 * t, 50)))
    mean, _ = kf.predict(mean, cov)
    assert mean[4] == pytest.approx(4, abs=0.15)  # ≈ 4 px a frame (3.87 after 14 frames)
    assert xyah_to_xyxy(mean[:4])[0] == pytest.approx(60, abs=0.3)  # the box at frame 15 (59.79), not at 56


def test_mask_choice_phases_and_the_weighted_score() -> None:
    cfg = SamuraiConfig(stable_frames_threshold=2)
    kf = KalmanBoxFilter()
    track, far = (10, 10, 30, 50), (90, 90, 110, 130)
    boxes = {0: far, 1: track, 2: EMPTY_BOX}
    motion = ObjectMotion()
    first = choose_mask(motion, [0.2, 0.9, 0.1], boxes.get, cfg, kf)
    assert (first.index, first.phase, motion.stable_frames) == (1, "start", 1)
    warm = choose_mask(motion, [0.2, 0.9, 0.1], boxes.get, cfg, kf)
    assert (warm.index, warm.phase, warm.kf_score, motion.stable_frames) == (1, "warm-up", None, 2)
    # Motion phase: the far mask has the best predicted IoU, the mask on the track wins the weighted score.
    chosen = choose_mask(motion, [0.9, 0.8, 0.1], boxes.get, cfg, kf)
    assert chosen.phase == "motion" and chosen.index == 1
    assert chosen.kf_ious == pytest.approx((0.0, 1.0, 0.0), abs=1e-6)
    assert chosen.weighted == pytest.approx((0.75 * 0.9, 0.25 + 0.75 * 0.8, 0.75 * 0.1), abs=1e-6)
    assert chosen.kf_score == pytest.approx(1.0)
    # Without the motion weight, SAMURAI's choice is plain SAM2's (best predicted IoU).
    no_motion = choose_mask(motion, [0.9, 0.8, 0.1], boxes.get, SamuraiConfig(stable_frames_threshold=2,
                                                                              kf_score_weight=0.0), kf)
    assert no_motion.index == 0
    # A chosen mask with predicted IoU below 0.3 ends the stable track: the next frame restarts the filter.
    choose_mask(motion, [0.25, 0.2, 0.1], boxes.get, cfg, kf)
    assert motion.stable_frames == 0
    assert choose_mask(motion, [0.25, 0.2, 0.1], boxes.get, cfg, kf).phase == "start"
    # In warm-up a low predicted IoU restarts too.
    m2 = ObjectMotion()
    choose_mask(m2, [0.9, 0.1, 0.1], boxes.get, cfg, kf)
    choose_mask(m2, [0.3, 0.1, 0.1], boxes.get, cfg, kf)  # 0.3 is not above 0.3
    assert m2.stable_frames == 0


def test_motion_aware_choice_keeps_the_target_where_two_characters_cross() -> None:
    plain, samurai, plain_late, samurai_late = crossing_simulation(draws=5)
    assert samurai_late > plain_late + 0.1  # once the Kalman track is stable, the moving target is kept
    assert samurai >= plain


def test_memory_frames_skip_low_scores() -> None:
    cfg = SamuraiConfig()
    good, low_iou, absent = FrameScores(0.9, 2.0), FrameScores(0.5, 2.0), FrameScores(0.9, 0.0)
    scores = {1: good, 2: good, 3: low_iou, 4: absent, 5: good, 6: low_iou, 7: FrameScores(0.8, 1.0, 0.2),
              8: absent, 9: low_iou}
    # num_maskmem 4 → 3 memory frames: qualifying 2, 5, 7 (frame 1 is never searched), plus frame 9 (previous).
    assert memory_frames(10, scores, 4, 16, cfg) == [5, 7, 9]
    assert memory_frames(10, scores, 7, 16, cfg) == [2, 5, 7, 9]
    # The Kalman threshold applies only when set.
    assert memory_frames(10, scores, 4, 16, SamuraiConfig(memory_bank_kf_score_threshold=0.5)) == [2, 5, 9]
    assert memory_frames(8, scores, 4, 16, cfg) == [2, 5, 7]
    assert memory_frames(1, {}, 7, 16, cfg) == [0]  # frame 0 is the prompted frame: not a memory frame
    assert memory_frames(5, {}, 1, 16, cfg) == []
    # The search stops after max_object_pointers - 1 qualifying frames.
    all_good = dict.fromkeys(range(1, 10), good)
    assert memory_frames(10, all_good, 7, 3, cfg) == [8, 9]
    assert memory_frames(10, all_good, 7, 16, cfg) == [4, 5, 6, 7, 8, 9]


def test_a_transformers_without_samurais_hook_points_gets_the_version_to_install() -> None:
    """transformers 4.56 has Sam2VideoModel but gathers memory frames inline (no `_gather_memory_frame_outputs`)."""
    real = transformers_classes()

    class Sam2VideoModel:  # 4.56's shape: the class, two of the three methods
        def _run_single_frame_inference(self) -> None: ...
        def _encode_new_memory(self) -> None: ...

    like_456 = types.SimpleNamespace(__version__="4.56.2", GroundingDinoForObjectDetection=object,
                                     GroundingDinoProcessor=object, Sam2VideoModel=Sam2VideoModel,
                                     Sam2VideoProcessor=real.Sam2VideoProcessor)
    with pytest.raises(CharacterModelsUnavailable) as err:
        transformers_classes(like_456)
    msg = str(err.value)
    assert REQUIRED_TRANSFORMERS == "4.57.1" and "4.57.1" in msg and "4.56.2" in msg
    assert "_gather_memory_frame_outputs" in msg and "SAMURAI" in msg
    with pytest.raises(RuntimeError, match="_gather_memory_frame_outputs"):
        SamuraiTracking(Sam2VideoModel()).__enter__()


# --- inside a real Sam2VideoModel -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracker():
    return lively_tracker()


def _session(proc, frames):
    session = proc.init_video_session(video=list(frames), inference_device="cpu", dtype=torch.float32)
    proc.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1], input_boxes=[[[10.0, 40.0, 50.0, 80.0]]])
    return session


def _frame_of(session, out: dict) -> int:
    for idx, o in session.output_dict_per_obj[0]["non_cond_frame_outputs"].items():
        if o is out:
            return idx
    for idx, o in session.output_dict_per_obj[0]["cond_frame_outputs"].items():
        if o is out:
            return -1 - idx  # conditioning frame k → -1-k
    raise AssertionError("memory entry that is no stored frame output")


def _run(model, proc, frames, config: SamuraiConfig | None):
    """Propagate; return SAMURAI's records, the memory frames the attention really got, the raw decoder
    proposals and the emitted masks per frame, and the session."""
    session = _session(proc, frames)
    attended: dict[int, list[int]] = {}
    proposals: dict[int, tuple[torch.Tensor, ...]] = {}
    emitted: dict[int, torch.Tensor] = {}
    build = model._build_memory_attention_inputs
    current: list[int] = []

    def spy_build(pairs, device):
        attended[current[0]] = sorted(_frame_of(session, out) for r, out in pairs if out is not None and r > 0)
        return build(pairs, device)

    def spy_decoder(module, inputs, output):  # registered first: sees the decoder's own output
        proposals[current[0]] = tuple(output[i].detach().clone() for i in (0, 1, 3))  # masks, IoUs, object

    model._build_memory_attention_inputs = spy_build
    handle = model.mask_decoder.register_forward_hook(spy_decoder)
    tracking = SamuraiTracking(model, config) if config is not None else None
    try:
        if tracking is not None:
            tracking.__enter__()
        with torch.inference_mode():
            for t in range(len(frames)):
                current[:] = [t]
                emitted[t] = model(session, frame_idx=t).pred_masks.clone()
    finally:
        if tracking is not None:
            tracking.__exit__(None, None, None)
        handle.remove()
        del model._build_memory_attention_inputs
    return (tracking.records if tracking else {}), attended, proposals, emitted, session


def test_the_model_attends_exactly_samuraIs_memory_frames(tracker) -> None:
    model, proc = tracker
    frames, _ = occlusion_clip(frames=10)
    # First run: the predicted IoUs this model gives; then a threshold that some frames pass and some do not.
    records, *_ = _run(model, proc, frames, SamuraiConfig(memory_bank_obj_score_threshold=-10.0))
    threshold = float(np.median([max(r.ious) for r in records.values() if r.ious]))
    cfg = SamuraiConfig(memory_bank_obj_score_threshold=-10.0, memory_bank_iou_threshold=threshold)
    records, attended, _, _, session = _run(model, proc, frames, cfg)
    stored = session.output_dict_per_obj[0]["non_cond_frame_outputs"]
    scores = {i: out["samurai"] for i, out in stored.items()}
    excluded_somewhere = False
    for t in range(2, len(frames)):
        expected = memory_frames(t, scores, model.num_maskmem, model.config.max_object_pointers_in_encoder, cfg)
        assert attended[t] == expected == records[(t, 0)].memory, t
        low = [i for i in range(2, t - 1) if scores[i].iou <= threshold]
        assert not set(low) & set(attended[t]), (t, low)  # a low-score frame is never remembered...
        excluded_somewhere |= bool(low)
    assert excluded_somewhere
    # ...while plain SAM2 remembers the last num_maskmem - 1 frames whatever their scores.
    _, plain, *_ = _run(model, proc, frames, None)
    assert plain[9] == list(range(9 - (model.num_maskmem - 1), 9))
    assert any(plain[t] != attended[t] for t in range(2, 10))


def test_the_model_emits_the_chosen_proposal(tracker) -> None:
    model, proc = tracker
    frames, _ = fast_motion_clip(frames=8)
    # Weight 1: the choice is by Kalman IoU alone, so it differs from the best predicted IoU on some frame.
    cfg = SamuraiConfig(stable_frames_threshold=2, kf_score_weight=1.0)
    records, _, proposals, emitted, session = _run(model, proc, frames, cfg)
    motion = [r for r in records.values() if r.choice is not None and r.choice.phase == "motion"]
    assert len(motion) >= 4
    differs = 0
    for rec in motion:
        masks, ious, _ = proposals[rec.frame_idx]
        assert rec.ious == pytest.approx(ious[0, 0].tolist())
        assert rec.choice.index == int(np.argmax(rec.choice.weighted))
        assert torch.equal(emitted[rec.frame_idx].reshape(masks.shape[-2:]), masks[0, 0, rec.choice.index])
        differs += rec.choice.index != int(torch.argmax(ious[0, 0]))
        stored = session.output_dict_per_obj[0]["non_cond_frame_outputs"][rec.frame_idx]
        assert stored["samurai"].iou == pytest.approx(rec.ious[rec.choice.index])
        assert stored["samurai"].kf_score == pytest.approx(rec.choice.kf_score)
    assert differs >= 1
    # The stored object score is the decoder's own (not the shifted one transformers tested against 0).
    for t in range(1, len(frames)):
        stored = session.output_dict_per_obj[0]["non_cond_frame_outputs"][t]
        assert torch.equal(stored["object_score_logits"], proposals[t][2])
        assert stored["samurai"].object_score == proposals[t][2].item()


def test_plain_tracking_is_unchanged_and_the_model_is_left_clean(tracker) -> None:
    model, proc = tracker
    frames, _ = occlusion_clip(frames=6)
    boxes = [(10, 40, 50, 80)]
    before = track_characters(model, proc, frames, boxes, tracking="sam2")
    # The plain result is transformers' own propagation, mask logit > 0.
    session = _session(proc, frames)
    direct = np.zeros(frames.shape[:3], np.uint16)
    for out in model.propagate_in_video_iterator(session, start_frame_idx=0):
        m = proc.post_process_masks([out.pred_masks], original_sizes=[frames.shape[1:3]], binarize=True,
                                    mask_threshold=0.0)[0][0, 0].numpy()
        direct[out.frame_idx][m] = 1
    assert np.array_equal(before, direct)
    samurai = track_characters(model, proc, frames, boxes)  # the default is SAMURAI
    assert not np.array_equal(samurai, before)
    assert not {"_run_single_frame_inference", "_encode_new_memory", "_gather_memory_frame_outputs"} & set(vars(model))
    assert not model.mask_decoder._forward_hooks
    assert np.array_equal(track_characters(model, proc, frames, boxes, tracking="sam2"), before)
    with pytest.raises(ValueError, match="samurai"):
        track_characters(model, proc, frames, boxes, tracking="xmem")  # type: ignore[arg-type]
    with SamuraiTracking(model), pytest.raises(RuntimeError, match="already overridden"):
        SamuraiTracking(model).__enter__()
    assert not model.mask_decoder._forward_hooks


def test_object_presence_uses_samurais_threshold() -> None:
    """With object score logits in (-1, 0) plain SAM2 calls the object absent (empty masks), SAMURAI (present
    above -1) keeps its masks."""
    model, proc = lively_tracker()
    frames, _ = occlusion_clip(frames=4)
    _, _, proposals, _, _ = _run(model, proc, frames, SamuraiConfig())
    mean_score = float(np.mean([proposals[t][2].item() for t in range(1, 4)]))
    with torch.no_grad():  # move this model's object scores to about -0.5
        model.mask_decoder.pred_obj_score_head.proj_out.bias -= mean_score + 0.5
    _, _, _, emitted, session = _run(model, proc, frames, SamuraiConfig())
    scores = [session.output_dict_per_obj[0]["non_cond_frame_outputs"][t]["samurai"].object_score
              for t in range(1, 4)]
    assert all(-1 < s < 0 for s in scores), scores
    assert all(bool((emitted[t] > 0).any()) for t in range(1, 4))
    _, _, _, plain, _ = _run(model, proc, frames, None)
    assert not any(bool((plain[t] > 0).any()) for t in range(1, 4))
