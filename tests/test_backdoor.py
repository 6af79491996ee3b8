"""Backdoor building blocks against hand computations: trigger stamping, poisoning counts,
the backdoor metrics, the MAD anomaly index, and the triggers' parameter declarations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustlab.attacks.backdoor import (TRIGGERS, PatchTrigger, PoisonSettings, Trigger,
                                       backdoor_metrics, make_trigger, n_poison, poison, stamp)
from trustlab.defenses.neural_cleanse import anomaly_indices, flagged_labels
from trustlab.errors import TrustlabError
from trustlab.registry import ParamError


def _images(n=5, shape=(1, 12, 10), seed=0):
    # Values strictly inside (0.1, 0.9): a white (1.0) or black (0.0) pixel always differs.
    return np.random.default_rng(seed).uniform(0.1, 0.9, (n, *shape)).astype(np.float32)


@pytest.mark.parametrize("position, corner", [("bottom_right", (8, 6)), ("top_left", (0, 0)),
                                              ("top_right", (0, 6)), ((3, 2), (3, 2))])
def test_patch_changes_exactly_the_square(position, corner):
    x = _images()
    trig = make_trigger("patch", x.shape[1:], size=4, position=position)
    out = trig.apply(x)
    changed = np.any(out != x, axis=(0, 1))
    expected = np.zeros(x.shape[2:], bool)
    r, c = corner
    expected[r:r + 4, c:c + 4] = True
    np.testing.assert_array_equal(changed, expected)
    assert np.all(out[:, :, r:r + 4, c:c + 4] == 1.0)
    np.testing.assert_array_equal(out[:, :, ~expected], x[:, :, ~expected])


def test_pattern_is_a_checkerboard_in_the_square():
    x = _images(shape=(3, 8, 8))
    out = make_trigger("pattern", x.shape[1:], size=3, position="bottom_left").apply(x)
    expected = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.float32)
    for img in out:
        for ch in img:
            np.testing.assert_array_equal(ch[5:8, 0:3], expected)
    outside = np.ones((8, 8), bool)
    outside[5:8, 0:3] = False
    np.testing.assert_array_equal(out[:, :, outside], x[:, :, outside])


def test_blended_is_alpha_blend_and_torch_matches_numpy():
    x = _images(shape=(1, 6, 6))
    trig = make_trigger("blended", x.shape[1:], alpha=0.2, seed=3)
    pattern = trig.pattern
    assert pattern.min() >= 0 and pattern.max() <= 1 and pattern.std() > 0.1
    np.testing.assert_allclose(trig.apply(x), 0.8 * x + 0.2 * pattern, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(trig.apply(torch.tensor(x)).numpy(), trig.apply(x), atol=1e-7)
    # the same seed gives the same pattern, another seed another one
    assert np.array_equal(make_trigger("blended", x.shape[1:], seed=3).pattern, pattern)
    assert not np.array_equal(make_trigger("blended", x.shape[1:], seed=4).pattern, pattern)


def test_poisoning_adds_rounded_rate_of_nontarget_copies_with_target_label():
    x = _images(n=53, shape=(1, 8, 8))
    y = np.arange(53) % 5            # label 2 is the target: 42 non-target rows
    trig = PatchTrigger((1, 8, 8), size=2)
    p = poison(x, y, trig, target=2, rate=0.15, seed=0)
    k = round(0.15 * 42)
    assert n_poison(42, 0.15) == k == 6
    assert len(p.y) == 53 + k and p.is_poison.sum() == k
    np.testing.assert_array_equal(p.x[:53], x)               # originals untouched
    np.testing.assert_array_equal(p.y[:53], y)
    assert np.all(p.y[53:] == 2) and np.all(y[p.source_idx] != 2)
    assert len(set(p.source_idx.tolist())) == k
    np.testing.assert_array_equal(p.x[53:], trig.apply(x[p.source_idx]))


def test_backdoor_metrics_match_hand_computation():
    y = np.array([0, 1, 2, 3, 1, 0, 2, 3])
    clean = np.array([0, 1, 2, 0, 1, 0, 1, 3])      # 6/8 correct
    trig = np.array([0, 0, 2, 0, 0, 0, 0, 3])       # target 0; non-target rows: 1..4, 6, 7
    m = backdoor_metrics(y, clean, trig, target=0)
    assert m["clean_accuracy"] == 6 / 8
    # non-target rows (y != 0): idx 1,2,3,4,6,7 -> triggered preds 0,2,0,0,0,3
    assert m["attack_success_rate"] == 4 / 6
    assert m["robust_accuracy"] == 2 / 6             # idx 2 (2==2) and 7 (3==3)


def test_mad_anomaly_index_matches_hand_computation_and_flags_low_outlier():
    l1 = np.array([2.0, 20.0, 22.0, 18.0, 25.0, 19.0, 21.0, 23.0, 17.0, 60.0])
    med = 20.5                                         # (20 + 21) / 2
    dev = np.abs(l1 - med)                             # sorted: .5 .5 1.5 1.5 2.5 2.5 3.5 4.5 18.5 39.5
    mad = 1.4826 * 2.5
    np.testing.assert_allclose(anomaly_indices(l1), dev / mad)
    assert anomaly_indices(l1)[0] == pytest.approx(18.5 / (1.4826 * 2.5))
    # label 9 is an outlier too, but above the median: only label 0 is flagged
    assert flagged_labels(l1) == [0]
    assert flagged_labels(np.array([10.0, 11, 9, 10.5, 9.5])) == []


def test_trigger_rejects_bad_input():
    with pytest.raises(TrustlabError, match="unknown backdoor attack 'star'"):
        make_trigger("star", (1, 8, 8))
    with pytest.raises(ParamError, match="position: a 4x4 trigger at .6, 6. does not fit"):
        make_trigger("patch", (1, 8, 8), size=4, position=(6, 6))
    with pytest.raises(ParamError, match="position: .*does not fit in a 8x8 image"):
        make_trigger("pattern", (1, 8, 8), size=9, position="top_left")
    with pytest.raises(ParamError, match="unknown position 'middle_left'"):
        make_trigger("patch", (1, 8, 8), position="middle_left")
    with pytest.raises(ParamError, match="poison_rate"):
        poison(_images(), np.zeros(5, int), make_trigger("patch", (1, 12, 10)), 0, 1.5)
    with pytest.raises(TrustlabError, match=r"images \(C, H, W\)"):
        make_trigger("patch", (64,))


@pytest.mark.parametrize("name, params, key", [
    ("patch", {"size": 0}, "size"),
    ("pattern", {"size": 2.5}, "size"),
    ("patch", {"position": [1, 2, 3]}, "position"),
    ("patch", {"alpha": 0.5}, "alpha"),          # not a parameter of a square trigger
    ("blended", {"alpha": 0}, "alpha"),
    ("blended", {"alpha": 1.5}, "alpha"),
    ("blended", {"size": 4}, "size"),
])
def test_trigger_parameters_are_declared_once_and_checked(name, params, key):
    with pytest.raises(ParamError) as err:
        make_trigger(name, (1, 8, 8), **params)
    assert err.value.key == key
    # the registry resolves the same declaration (what a config block uses)
    with pytest.raises(ParamError, match=key):
        TRIGGERS.resolve(name, params)


def test_trigger_defaults_come_from_the_declaration():
    assert TRIGGERS.resolve("patch", {}) == {"size": 4, "position": "bottom_right"}
    assert TRIGGERS.resolve("blended", {}) == {"alpha": 0.2}
    assert set(TRIGGERS) >= {"patch", "pattern", "blended"}
    trig = make_trigger("pattern", (1, 8, 8), position=[2, 3])
    assert trig.position == (2, 3) and trig.size == 4 and trig.params.size == 4
    assert PoisonSettings().to_dict() == {"target": 0, "poison_rate": 0.1}


class CleanLabelPatch(PatchTrigger):
    """Toy clean-label trigger: poisons the target's own images (no relabelling needed)."""

    name = "clean_label_patch"

    def poison_candidates(self, y, target):
        return np.flatnonzero(np.asarray(y) == target)


def test_a_clean_label_trigger_is_one_subclass():
    x = _images(n=40, shape=(1, 8, 8))
    y = np.arange(40) % 4                           # 10 rows of the target 1
    trig = CleanLabelPatch((1, 8, 8), size=2)
    assert isinstance(trig, Trigger)
    p = poison(x, y, trig, target=1, rate=0.5, seed=0)
    assert p.is_poison.sum() == 5 and np.all(y[p.source_idx] == 1)
    np.testing.assert_array_equal(p.x[40:], trig.apply(x[p.source_idx]))


def test_stamp_accepts_a_reversed_mask_with_channel_axis():
    x = _images(n=2, shape=(1, 4, 4))
    mask = np.zeros((1, 4, 4), np.float32)
    mask[0, 0, 0] = 0.5
    pattern = np.ones((1, 4, 4), np.float32)
    out = stamp(x, mask, pattern)
    assert out[0, 0, 0, 0] == pytest.approx(0.5 * x[0, 0, 0, 0] + 0.5)
    np.testing.assert_array_equal(out[:, :, 1:], x[:, :, 1:])


def test_neural_cleanse_cost_schedule_follows_the_reference_code():
    """The per-epoch schedule of Wang et al.'s visualizer.py, scripted by hand for one
    label: cost 0 until `patience` successes, then init_cost; x2 after `patience` more
    successes, / 2**1.5 after `patience` failures; stop once both moves happened and the
    best L1 has not improved for `early_stop_patience` epochs."""
    import torch

    from trustlab.defenses.neural_cleanse import NeuralCleanse, _CostSchedule

    p = NeuralCleanse.Params(patience=2, early_stop_patience=3, init_cost=1e-3,
                             cost_multiplier=2.0)
    sched = _CostSchedule(1, p, "cpu")
    label = torch.tensor([0])
    costs, bests, done = [], [], []
    # epochs 1-2 succeed: cost set to init_cost (and the up count restarts at 1); epoch 3
    # is the 2nd success in a row: x2; epochs 5-6 fail: / 2**1.5; epochs 7-9 succeed with
    # a larger L1 (no new best): the best L1 is stale from epoch 5 on, both moves have
    # happened by epoch 6, so the label stops at epoch 7 (3 stale epochs)
    script = [(1.0, 50.0), (1.0, 40.0), (1.0, 30.0), (1.0, 20.0), (0.5, 10.0), (0.5, 10.0),
              (1.0, 25.0), (1.0, 25.0), (1.0, 25.0)]
    for acc, l1 in script:
        better = sched.end_epoch(label, torch.tensor([acc]), torch.tensor([l1]))
        costs.append(round(float(sched.cost[0]), 9))
        bests.append(bool(better[0]))
        done.append(bool(sched.done[0]))
    c = 1e-3
    down, up_again = round(2 * c / 2 ** 1.5, 9), round(4 * c / 2 ** 1.5, 9)
    assert costs == [0.0, c, 2 * c, 2 * c, 2 * c, down, down, up_again, up_again]
    # only successful epochs with a smaller L1 give a new best trigger
    assert bests == [True, True, True, True, False, False, False, False, False]
    assert float(sched.best_l1[0]) == 20.0
    assert done == [False] * 6 + [True] * 3
