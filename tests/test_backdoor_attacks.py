"""SIG and WaNet against hand computations: SIG's sinusoid in numpy, WaNet's warp as
bilinear resampling in numpy (identity at strength 0, pixel shifts for a constant field),
clean-label poisoning in place, WaNet's noise-mode rows with their true labels, numpy and
torch inputs alike, and bad parameters named by their key in an experiment file."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from trustlab.attacks.backdoor import PatchTrigger, make_trigger, poison
from trustlab.attacks.backdoor.sig import SigTrigger
from trustlab.attacks.backdoor.wanet import WaNetTrigger, identity_grid, warp
from trustlab.errors import TrustlabError
from trustlab.experiments.config import load_experiment
from trustlab.registry import ParamError


def _images(n=4, shape=(1, 6, 7), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def _bilinear(img: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Oracle: ``img`` (C, H, W) sampled at ``grid`` (H, W, 2) of (column, row) in [-1, 1]
    with corners on pixel centres, bilinear, pixels outside the image read as 0."""
    c, h, w = img.shape
    out = np.zeros((c, *grid.shape[:2]))

    def pixel(r, q):
        return img[:, r, q] if 0 <= r < h and 0 <= q < w else np.zeros(c)

    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            col = (grid[i, j, 0] + 1) / 2 * (w - 1)
            row = (grid[i, j, 1] + 1) / 2 * (h - 1)
            c0, r0 = int(np.floor(col)), int(np.floor(row))
            a, b = col - c0, row - r0
            out[:, i, j] = ((1 - a) * (1 - b) * pixel(r0, c0) + a * (1 - b) * pixel(r0, c0 + 1)
                            + (1 - a) * b * pixel(r0 + 1, c0) + a * b * pixel(r0 + 1, c0 + 1))
    return out


# -- SIG ------------------------------------------------------------------------------------
def test_sig_adds_the_sinusoid_and_clips():
    x = _images(n=3, shape=(2, 3, 10))
    x[0, 0, 0, :] = 1.0                                   # saturated row: clipped at 1
    x[1, 1, 2, :] = 0.0                                   # black row: clipped at 0
    trig = make_trigger("sig", x.shape[1:], delta=0.25, frequency=2)
    expected = np.empty_like(x)
    for n, ch, i, j in np.ndindex(*x.shape):
        v = 0.25 * np.sin(2 * np.pi * j * 2 / 10)         # v(i, j) = delta sin(2 pi j f / m)
        expected[n, ch, i, j] = min(1.0, max(0.0, x[n, ch, i, j] + v))
    np.testing.assert_allclose(trig.apply(x), expected, atol=1e-6)
    assert trig.mask is None and trig.pattern is None
    torch_out = trig.apply(torch.tensor(x))
    assert isinstance(torch_out, torch.Tensor) and torch_out.dtype == torch.float32
    np.testing.assert_allclose(torch_out.numpy(), trig.apply(x), atol=1e-7)


def test_sig_is_clean_label_and_replaces_the_target_images():
    x = _images(n=40, shape=(1, 5, 9))
    y = np.arange(40) % 4                                 # 10 rows of the target 1
    trig = make_trigger("sig", x.shape[1:], delta=0.1, frequency=2)
    np.testing.assert_array_equal(trig.poison_candidates(y, 1), np.flatnonzero(y == 1))
    p = poison(x, y, trig, target=1, rate=0.5, seed=0)
    src = p.source_idx
    assert len(src) == 5 and np.all(y[src] == 1)
    # the same rows, the same labels: 35 untouched originals in order, then 5 in their place
    keep = np.setdiff1d(np.arange(40), src)
    assert len(p.y) == 40 and p.is_poison.sum() == 5 and np.all(p.is_poison[35:])
    np.testing.assert_array_equal(p.x[:35], x[keep])
    np.testing.assert_array_equal(p.y[:35], y[keep])
    np.testing.assert_array_equal(p.y[35:], y[src])       # true labels, unchanged
    np.testing.assert_array_equal(np.sort(p.y), np.sort(y))
    np.testing.assert_array_equal(p.x[35:], trig.apply(x[src]))
    assert len(p.extra_idx) == 0


def test_dirty_label_poisoning_layout_is_unchanged():
    x = _images(n=30, shape=(1, 6, 6))
    y = np.arange(30) % 3
    p = poison(x, y, PatchTrigger((1, 6, 6), size=2), target=0, rate=0.5, seed=1)
    np.testing.assert_array_equal(p.x[:30], x)            # originals stay, copies follow
    assert len(p.y) == 30 + 10 and np.all(p.y[30:] == 0) and np.all(p.is_poison[30:])
    assert len(p.extra_idx) == 0


# -- WaNet ----------------------------------------------------------------------------------
def test_wanet_with_strength_zero_is_the_identity():
    x = _images(shape=(2, 7, 7))
    trig = make_trigger("wanet", x.shape[1:], strength=0.0)
    np.testing.assert_array_equal(trig.grid, identity_grid(7, 7))
    np.testing.assert_allclose(trig.apply(x), x, atol=1e-6)


def test_a_constant_shift_field_is_a_pixel_shift_and_bilinear_in_between():
    x = _images(n=2, shape=(1, 5, 6))
    ident = identity_grid(5, 6)
    one_col, one_row = 2 / (6 - 1), 2 / (5 - 1)           # one pixel, in grid units
    right = warp(x, ident + np.array([one_col, 0], np.float32))
    np.testing.assert_allclose(right[..., :-1], x[..., 1:], atol=1e-6)   # reads the next column
    np.testing.assert_allclose(right[..., -1], 0, atol=1e-6)             # outside: zero padding
    down = warp(x, ident + np.array([0, one_row], np.float32))
    np.testing.assert_allclose(down[..., :-1, :], x[..., 1:, :], atol=1e-6)
    half = warp(x, ident + np.array([one_col / 2, 0], np.float32))
    np.testing.assert_allclose(half[..., :-1], (x[..., :-1] + x[..., 1:]) / 2, atol=1e-6)
    odd = ident + np.array([0.3 * one_col, -0.7 * one_row], np.float32)
    for img, out in zip(x, warp(x, odd)):
        np.testing.assert_allclose(out, _bilinear(img, odd), atol=1e-6)


def test_wanet_field_is_the_normalised_uniform_draw_and_the_warp_matches_numpy():
    # k equal to the image side: upsampling is the identity, so the field is the draw
    shape, seed, s = (1, 5, 5), 3, 1.5
    trig = make_trigger("wanet", shape, seed=seed, k=5, strength=s)
    draw = np.random.default_rng(seed).uniform(-1, 1, (1, 2, 5, 5))
    draw = draw / np.abs(draw).mean()
    flow = np.moveaxis(draw[0], 0, -1)                    # channel 0 moves columns
    np.testing.assert_allclose(trig.flow, flow, atol=1e-5)
    grid = np.clip(identity_grid(5, 5) + s * flow / 5, -1, 1)
    np.testing.assert_allclose(trig.grid, grid, atol=1e-6)
    x = _images(n=3, shape=shape)
    for img, out in zip(x, trig.apply(x)):
        np.testing.assert_allclose(out, _bilinear(img, grid), atol=1e-5)


def test_wanet_field_is_smooth_seeded_and_defaults_are_the_papers():
    trig = make_trigger("wanet", (1, 28, 28), seed=0)
    assert (trig.k, trig.strength, trig.cross_ratio) == (4, 0.5, 2.0)
    # the 4x4 control offsets reach the corners exactly (align_corners=True)
    draw = np.random.default_rng(0).uniform(-1, 1, (1, 2, 4, 4))
    draw = draw / np.abs(draw).mean()
    np.testing.assert_allclose(trig.flow[0, 0], draw[0, :, 0, 0], atol=1e-5)
    np.testing.assert_allclose(trig.flow[-1, -1], draw[0, :, -1, -1], atol=1e-5)
    assert np.abs(np.diff(trig.flow, axis=0)).max() < 1   # smooth: bicubic, not noise
    same = make_trigger("wanet", (1, 28, 28), seed=0)
    other = make_trigger("wanet", (1, 28, 28), seed=1)
    np.testing.assert_array_equal(same.grid, trig.grid)
    assert np.abs(other.grid - trig.grid).max() > 1e-3


def test_wanet_numpy_and_torch_inputs_give_the_same_values():
    x = _images(n=3, shape=(3, 8, 8))
    trig = make_trigger("wanet", x.shape[1:], seed=2, strength=2.0)
    out = trig.apply(torch.tensor(x))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), trig.apply(x), atol=1e-7)
    assert isinstance(trig.apply(x), np.ndarray) and trig.apply(x).dtype == np.float32
    assert np.abs(trig.apply(x) - x).max() > 1e-3         # it does move pixels


def test_wanet_noise_mode_rows_keep_true_labels_and_are_not_poisoned():
    x = _images(n=60, shape=(1, 8, 8))
    y = np.arange(60) % 3
    trig = make_trigger("wanet", x.shape[1:], seed=0, strength=1.0)     # cross_ratio 2
    p = poison(x, y, trig, target=0, rate=0.25, seed=0)
    k = round(0.25 * 40)                                                 # 40 non-target rows
    n_cross = 2 * k
    assert len(p.y) == 60 + k + n_cross and p.is_poison.sum() == k
    np.testing.assert_array_equal(p.x[:60], x)
    assert np.all(p.is_poison[60:60 + k]) and not p.is_poison[60 + k:].any()
    np.testing.assert_array_equal(p.x[60:60 + k], trig.apply(x[p.source_idx]))
    assert np.all(p.y[60:60 + k] == 0)
    extra = p.extra_idx
    assert len(set(extra.tolist())) == n_cross and not set(extra) & set(p.source_idx)
    np.testing.assert_array_equal(p.y[60 + k:], y[extra])                # true labels
    assert set(y[extra].tolist()) == {0, 1, 2}                           # any class
    # each is warped at the trigger's grid plus its own uniform noise in [-1, 1] / H,
    # clamped: redo poison()'s draws from its seed (rows, then rows, then noise)
    rng = np.random.default_rng(0)
    src = np.sort(rng.choice(np.flatnonzero(y != 0), size=k, replace=False))
    pool = np.setdiff1d(np.arange(60), src)
    rows = np.sort(rng.choice(pool, size=n_cross, replace=False))
    noise = rng.uniform(-1, 1, (n_cross, 8, 8, 2))
    np.testing.assert_array_equal(src, p.source_idx)
    np.testing.assert_array_equal(rows, extra)
    cross = p.x[60 + k:]
    for img, d, out in zip(x[extra], noise, cross):
        np.testing.assert_allclose(out, _bilinear(img, np.clip(trig.grid + d / 8, -1, 1)),
                                   atol=1e-5)
    assert not np.allclose(cross, trig.apply(x[extra]), atol=1e-3)   # not the exact warp
    off = poison(x, y, make_trigger("wanet", x.shape[1:], cross_ratio=0), 0, 0.25, seed=0)
    assert len(off.y) == 60 + k and len(off.extra_idx) == 0
    # same seed, same rows
    again = poison(x, y, trig, target=0, rate=0.25, seed=0)
    np.testing.assert_array_equal(again.x, p.x)


def test_noise_mode_never_takes_more_rows_than_are_left():
    x = _images(n=10, shape=(1, 4, 4))
    y = np.arange(10) % 2
    p = poison(x, y, make_trigger("wanet", (1, 4, 4), cross_ratio=5), 0, 1.0, seed=0)
    assert p.is_poison.sum() == 5 and len(p.extra_idx) == 5
    assert not set(p.extra_idx) & set(p.source_idx)


# -- parameters -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, params, key", [
    ("wanet", {"k": 1}, "k"),
    ("wanet", {"strength": -1}, "strength"),
    ("wanet", {"cross_ratio": -0.5}, "cross_ratio"),
    ("wanet", {"k": 9}, "k"),                     # a 9x9 grid in an 8x8 image
    ("sig", {"delta": 0}, "delta"),
    ("sig", {"delta": 1.5}, "delta"),
    ("sig", {"frequency": 0}, "frequency"),
    ("sig", {"frequency": 4}, "frequency"),       # half of 8 pixels: the sinusoid vanishes
    ("sig", {"size": 4}, "size"),
])
def test_bad_parameters_name_the_key(name, params, key):
    with pytest.raises(ParamError) as err:
        make_trigger(name, (1, 8, 8), **params)
    assert err.value.key == key and "\n" not in str(err.value)


EXPERIMENT = """
name: bd-new-attacks
kind: backdoor
dataset: {name: digits, subsample: 200}
model: {name: small_cnn, params: {width: 4}}
training: {epochs: 1, device: cpu}
attack: {trigger: TRIGGER, target: 0, poison_rate: 0.1}
seeds: [0]
"""


def _experiment(tmp_path, trigger):
    path = tmp_path / f"{trigger}.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT.replace("TRIGGER", trigger)))
    return path


@pytest.mark.parametrize("trigger, override, needle", [
    ("wanet", "attack.k=1", "attack.k: Input should be greater than or equal to 2"),
    ("wanet", "attack.strength=-1", "attack.strength: Input should be greater than or equal"),
    ("wanet", "attack.delta=0.1", "attack.delta: unknown parameter"),
    ("sig", "attack.delta=0", "attack.delta: Input should be greater than 0"),
    ("sig", "attack.frequency=-2", "attack.frequency: Input should be greater than 0"),
    ("sig", "attack.k=4", "attack.k: unknown parameter"),
])
def test_bad_parameters_in_an_experiment_file_name_the_key(tmp_path, trigger, override,
                                                           needle):
    with pytest.raises(TrustlabError, match=needle) as err:
        load_experiment(_experiment(tmp_path, trigger), [override])
    assert "\n" not in str(err.value)


def test_experiment_file_fills_the_declared_defaults(tmp_path):
    sig = load_experiment(_experiment(tmp_path, "sig"), ["attack.delta=0.2"]).trials[0]
    assert sig.config["attack"] == {"trigger": "sig", "delta": 0.2, "frequency": 6.0, "test_delta": None,
                                    "target": 0, "poison_rate": 0.1}
    wanet = load_experiment(_experiment(tmp_path, "wanet")).trials[0]
    assert wanet.config["attack"] == {"trigger": "wanet", "k": 4, "strength": 0.5,
                                      "cross_ratio": 2.0, "target": 0, "poison_rate": 0.1}


@pytest.mark.parametrize("attack, needle", [
    ({"trigger": "sig"}, "attack.frequency: 6 cycles do not fit in a 8-pixel-wide image"),
    ({"trigger": "wanet", "k": 9}, "attack.k: a 9x9 grid of offsets does not fit in a 8x8"),
])
def test_data_dependent_errors_name_the_key(attack, needle):
    from trustlab.experiments.kinds import TrialContext
    from trustlab.experiments.kinds import backdoor as kind

    cfg = kind.BackdoorConfig(dataset={"name": "digits", "subsample": 100},
                              attack=attack, training={"device": "cpu"})
    with pytest.raises(TrustlabError, match=needle):
        kind.run(cfg, 0, TrialContext(trial_id="t", threads=1))


@pytest.mark.parametrize("attack", [
    {"trigger": "sig", "delta": 0.3, "frequency": 2, "poison_rate": 0.5},
    {"trigger": "wanet", "strength": 1.0, "poison_rate": 0.1},
])
def test_both_attacks_run_through_the_backdoor_kind(attack):
    from trustlab.experiments.kinds import TrialContext
    from trustlab.experiments.kinds import backdoor as kind

    cfg = kind.BackdoorConfig(dataset={"name": "digits", "subsample": 300},
                              model={"params": {"width": 4}}, attack=attack,
                              training={"epochs": 1, "device": "cpu"},
                              defense={"clean_fraction": 0.2})
    m = kind.run(cfg, 0, TrialContext(trial_id="t", threads=1)).metrics
    n_fit = 300 - m["n_clean_defender"]
    if attack["trigger"] == "sig":      # in place: as many rows, half of the 0s signed
        assert m["n_train"] == n_fit and m["n_poison"] > 0
    else:                               # copies, plus twice as many noise-mode rows
        assert m["n_train"] == n_fit + 3 * m["n_poison"] and m["n_poison"] > 0
    assert 0 <= m["attack_success_rate"] <= 1 and 0 <= m["clean_accuracy"] <= 1


def test_sig_hides_delta_in_training_and_shows_test_delta_at_test_time():
    from trustlab.attacks.backdoor import make_trigger, poison

    x = np.full((4, 1, 4, 10), 0.5, dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    sig = make_trigger("sig", x.shape[1:], delta=0.1, test_delta=0.3, frequency=2)
    wave = np.sin(2 * np.pi * np.arange(10) * 2 / 10)
    np.testing.assert_allclose(sig.apply(x)[0, 0, 0], np.clip(0.5 + 0.3 * wave, 0, 1),
                               atol=1e-6)
    p = poison(x, y, sig, target=0, rate=1.0, seed=0)
    np.testing.assert_allclose(p.x[p.is_poison][0, 0, 0], 0.5 + 0.1 * wave, atol=1e-6)
    same = make_trigger("sig", x.shape[1:], delta=0.1, frequency=2)
    np.testing.assert_array_equal(same.apply(x), same.poison_apply(x))
