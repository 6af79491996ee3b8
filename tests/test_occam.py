"""OccamNets: the CAM suppression loss, the gate loss and the exit weights against hand
computations; early exit by the gates; training on real images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trustlab.errors import TrustlabError
from trustlab.training.deep import build_method, split_tensors, train
from trustlab.training.deep.occam import OccamCNN, balanced_gate_loss, cam_suppression


def test_cam_suppression_matches_a_hand_computation():
    gen = torch.Generator().manual_seed(0)
    cam = torch.randn(2, 3, 2, 2, generator=gen, dtype=torch.float64)
    y = torch.tensor([2, 0])
    total, count = 0.0, 0
    for i in range(2):
        gt = cam[i, y[i]].flatten().tolist()
        mean = sum(gt) / len(gt)
        for loc in range(4):
            count += 1
            if gt[loc] > mean:
                continue
            logits = cam[i, :, loc // 2, loc % 2].tolist()
            z = math.log(sum(math.exp(v) for v in logits))
            total += sum((1 / 3) * (math.log(1 / 3) - (v - z)) for v in logits)
    assert cam_suppression(cam, y).item() == pytest.approx(total / count, rel=1e-9)


def test_gate_loss_balances_exits_and_continues():
    gate = torch.tensor([0.9, 0.2, 0.6, 0.3], dtype=torch.float64)
    correct = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    # 3 exits, 1 continue: shares 3/3 and 1/3 of the larger count, weights
    # (1 / (share + eps)) ** 0.5, eps = 1e-5
    bce = [-math.log(0.9), -math.log(0.8), -math.log(0.6), -math.log(0.3)]
    w_exit, w_cont = (1 / (1 + 1e-5)) ** 0.5, (1 / (1 / 3 + 1e-5)) ** 0.5
    hand = (w_exit * (bce[0] + bce[2] + bce[3]) + w_cont * bce[1]) / 4
    assert balanced_gate_loss(gate, correct, 0.5).item() == pytest.approx(hand, rel=1e-6)


def test_exit_weights_and_early_exit_by_gates():
    method = build_method("occam", "occam_cnn", _tiny(), model_params={"width": 4}, seed=0)
    y = torch.tensor([0, 1])
    outs = [{"logits": torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
             "gate": torch.tensor([0.3, 0.9])},
            {"logits": torch.zeros(2, 3), "gate": torch.tensor([0.7, 0.2])},
            {"logits": torch.ones(2, 3), "gate": torch.tensor([0.1, 0.1])}]
    p = torch.softmax(outs[0]["logits"], 1)[torch.arange(2), y]
    w0 = p ** 3
    assert torch.allclose(method.exit_weights(0, outs, y), w0 / (w0.max() + 1e-5) + 0.1)
    w1 = 1 - outs[0]["gate"]
    assert torch.allclose(method.exit_weights(1, outs, y), w1 / (w1.max() + 1e-5) + 0.1)
    # exit 0 is never used at inference; sample 0 stops at exit 1, sample 1 falls to the last
    logits, chosen = OccamCNN.early_exit(outs)
    assert chosen.tolist() == [1, 2]
    assert torch.equal(logits, torch.stack([outs[1]["logits"][0], outs[2]["logits"][1]]))


def _tiny():
    from trustlab.data import load_dataset

    ds = load_dataset("digits")
    return split_tensors(ds, "train").subset(np.arange(300))


def test_occam_trains_on_digits_and_needs_its_network():
    tr = _tiny()
    method = build_method("occam", "occam_cnn", tr, model_params={"width": 8},
                          hparams={"lr": 3e-3}, seed=0)
    history = train(method, tr, epochs=4, batch_size=32, seed=0)
    assert history.last["train_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert history.last["train_cam_suppression"] > 0
    with pytest.raises(TrustlabError, match="method occam needs a multi-exit network"):
        build_method("occam", "small_cnn", tr, seed=0)
