"""Deep training methods: each one's defining property against a hand computation, every
registered method training on real data, and their parameter declarations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.nn import functional as F

from trustlab.errors import TrustlabError
from trustlab.registry import ParamError
from trustlab.training.deep import (
    METHODS,
    Method,
    build_method,
    make_method,
    make_model,
    split_tensors,
    train,
)
from trustlab.training.deep.methods import (
    fgsm_perturb,
    gradient_reversal,
    mmd,
    pgd_perturb,
)


@pytest.fixture(scope="module")
def digits():
    from trustlab.data import load_dataset

    ds = load_dataset("digits")
    tr = split_tensors(ds, "train").subset(np.arange(600))
    te = split_tensors(ds, "test")
    return tr, te


def _method(name, n_groups=2, hparams=None, seed=0, n_classes=3, n_features=4):
    torch.manual_seed(seed)
    model = make_model("mlp", (n_features,), n_classes, width=8, depth=1)
    return make_method(name, model, n_classes, n_groups, {"optimizer": "sgd", "lr": 0.1,
                                                          "momentum": 0.0, **(hparams or {})})


def _batch(n=12, n_features=4, n_classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, n_features, generator=gen)
    y = torch.randint(0, n_classes, (n,), generator=gen)
    g = torch.arange(n) % 2
    return x, y, g


def test_registry_and_parameter_declarations():
    assert set(METHODS) == {
        "erm", "reweight", "group_dro", "spectral_decoupling", "mindiff", "flooding",
        "hard_example_mining", "adversarial_training", "adversarial_sampling", "dann", "jtt",
        "embedding_smote",
        "occam"}
    net = make_model("mlp", (4,), 2)
    with pytest.raises(ParamError, match="etta: unknown parameter; parameters: adjustment, "
                                         "eta, lr"):
        make_method("group_dro", net, 2, 2, {"etta": 1})
    with pytest.raises(ParamError, match="by: Input should be 'group' or 'class'"):
        make_method("reweight", net, 2, 2, {"by": "sex"})
    with pytest.raises(ParamError, match="lr: Input should be greater than 0"):
        make_method("erm", net, 2, 2, {"lr": 0})
    with pytest.raises(TrustlabError, match="unknown training method"):
        make_method("irm", net, 2, 2)
    # The optimizer's parameters are declared once, on the base, and shared by every method.
    for _, cls in METHODS.items():
        assert issubclass(cls.Params, Method.Params) and cls.__doc__.strip()
    assert METHODS.resolve("group_dro", {"eta": 0.5}) == {
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9,
        "eta": 0.5, "adjustment": 0.0}
    # `lambda` is the YAML name (a Python keyword): hparams keeps it.
    method = make_method("spectral_decoupling", net, 2, 2, {"lambda": 0.3})
    assert method.hparams["lambda"] == 0.3 and method.lambda_ == 0.3
    assert isinstance(method.optimizer, torch.optim.Adam)
    with pytest.raises(ParamError, match="group_b: must differ from group_a"):
        make_method("mindiff", net, 2, 2, {"group_a": 1, "group_b": 1})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_an_epoch_on_digits(name, digits):
    tr, te = digits
    network, params = (("occam_cnn", {"width": 8}) if name == "occam"  # needs its exits
                       else ("mlp", {"width": 32, "depth": 1}))
    method = build_method(name, network, tr, model_params=params,
                          hparams={"lr": 0.01}, seed=0, device="cpu")
    history = train(method, tr, te, epochs=1, batch_size=32, seed=0)
    rec = history.last
    assert math.isfinite(rec["train_loss"]) and rec["train_loss"] > 0
    # One epoch of any method beats chance (10%) by far on the held-out digits.
    assert rec["val_accuracy"] > 0.3
    assert 0.0 <= rec["val_worst_group_accuracy"] <= rec["val_accuracy"]


def test_erm_training_loss_decreases(digits):
    tr, _ = digits
    method = build_method("erm", "small_cnn", tr, model_params={"width": 8}, seed=0)
    losses = [r["train_loss"] for r in train(method, tr, epochs=3, batch_size=64, seed=0).epochs]
    assert losses[0] > losses[1] > losses[2]


def test_reweight_weights_are_sklearn_balanced():
    method = _method("reweight", n_groups=3, hparams={"by": "class"})
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    g = torch.tensor([0, 1, 2] * 4)
    method.prepare(y, g)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    assert np.allclose(method.sample_weights(y, g).numpy(), expected[y.numpy()])
    x = torch.rand(12, 4)
    loss, _ = method.objective(x, y, g)
    per = F.cross_entropy(method.model(x), y, reduction="none")
    assert torch.isclose(loss, (torch.as_tensor(expected[y.numpy()]).float() * per).mean())


@pytest.mark.parametrize("adjustment", [0.0, 2.0])
def test_group_dro_moves_weight_to_the_higher_loss_group(adjustment):
    method = _method("group_dro", hparams={"eta": 0.5, "adjustment": adjustment})
    x, _, g = _batch()
    with torch.no_grad():
        pred = method.model(x).argmax(1)
    # Group 0 is labelled as predicted (low loss), group 1 with another class (high loss).
    y = torch.where(g == 0, pred, (pred + 1) % 3)
    n_g = torch.tensor([30.0, 5.0])
    method.prepare(y, torch.repeat_interleave(torch.tensor([0, 1]), n_g.long()))
    with torch.no_grad():
        losses = F.cross_entropy(method.model(x), y, reduction="none")
    group_loss = torch.stack([losses[g == 0].mean(), losses[g == 1].mean()])
    expected_q = torch.softmax(0.5 * (group_loss + adjustment / n_g.sqrt()), 0)
    logs = method.update((x, y, g))
    assert torch.allclose(method.q, expected_q, atol=1e-6)
    assert method.q[1] > 0.5 > method.q[0]
    # The loss minimised is the q-weighted sum of the (unadjusted) group losses.
    assert math.isclose(logs["loss"], float((expected_q * group_loss).sum()), rel_tol=1e-5)


def test_spectral_decoupling_adds_half_lambda_mean_squared_logit_norm():
    method = _method("spectral_decoupling", hparams={"lambda": 0.3})
    x, y, g = _batch()
    loss, logs = method.objective(x, y, g)
    logits = method.model(x).detach().numpy().astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ce = -np.log(p[np.arange(len(y)), y.numpy()]).mean()
    penalty = 0.3 / 2 * np.mean([np.dot(row, row) for row in logits])
    assert math.isclose(logs["penalty"], penalty, rel_tol=1e-5)
    assert math.isclose(loss.item(), ce + penalty, rel_tol=1e-5)


def test_spectral_decoupling_with_gamma_pulls_each_row_to_its_class_target():
    """The paper's SD with gamma: lambda/2 * mean_i ||z_i - gamma_{y_i}||^2."""
    gammas = [2.5, 0.44, -1.0]
    method = _method("spectral_decoupling", hparams={"lambda": 0.2, "gamma": gammas})
    x, y, g = _batch()
    loss, logs = method.objective(x, y, g)
    logits = method.model(x).detach().numpy().astype(np.float64)
    penalty = 0.2 / 2 * np.mean([np.sum((row - gammas[c]) ** 2)
                                 for row, c in zip(logits, y.numpy())])
    assert logs["penalty"] == pytest.approx(penalty, rel=1e-5)
    assert loss.item() == pytest.approx(logs["ce"] + penalty, rel=1e-5)
    # one number is the same target for every class; a list of the wrong length is refused
    one = _method("spectral_decoupling", hparams={"lambda": 0.2, "gamma": 1.5})
    assert one.gammas.tolist() == [1.5, 1.5, 1.5]
    with pytest.raises(ParamError, match="gamma: needs one value per class"):
        _method("spectral_decoupling", hparams={"gamma": [1.0, 2.0]})


def test_jtt_repeats_exactly_the_first_models_errors(digits):
    """JTT's training set: every row once, plus (upweight - 1) more copies of each row the
    identification model gets wrong (recomputed here from that model)."""
    tr, _ = digits
    method = build_method("jtt", "mlp", tr, model_params={"width": 16},
                          hparams={"id_epochs": 1, "upweight": 5, "lr": 0.01}, seed=0)
    initial = {k: v.clone() for k, v in method.model.state_dict().items()}
    fit = method.training_set(tr, seed=0, batch_size=64)
    with torch.no_grad():
        wrong = torch.nonzero(method.identification_model_(tr.x).argmax(1) != tr.y).flatten()
    assert torch.equal(method.error_rows_, wrong) and 0 < len(wrong) < len(tr)
    assert len(fit) == len(tr) + 4 * len(wrong)
    counts = np.bincount(np.concatenate([np.arange(len(tr)),
                                         np.repeat(wrong.numpy(), 4)]), minlength=len(tr))
    # each training row appears counts[i] times in the fitted set (matched by content)
    rows = {tuple(r): 0 for r in tr.x.flatten(1).numpy().round(5)}
    for r in fit.x.flatten(1).numpy().round(5):
        rows[tuple(r)] += 1
    assert sorted(rows.values()) == sorted(counts.tolist())
    # the final model starts from the initial weights, not the identification model's
    assert all(torch.equal(initial[k], v) for k, v in method.model.state_dict().items())
    history = train(method, tr, epochs=2, batch_size=64, seed=0)
    assert len(history.epochs) == 2 and history.last["train_accuracy"] > 0.5


@pytest.mark.parametrize("by", ["class", "group"])
def test_embedding_smote_refits_the_head_on_imblearns_resampling(by):
    """SMOTE runs on the trained network's embeddings (equal to imbalanced-learn's own
    fit_resample on them), balances every stratum, and only the head changes."""
    from imblearn.over_sampling import SMOTE

    gen = torch.Generator().manual_seed(0)
    n = 300
    x = torch.rand(n, 6, generator=gen)
    y = (torch.rand(n, generator=gen) < 0.2).long()          # class 1 is the minority
    g = (torch.rand(n, generator=gen) < 0.3).long()
    from trustlab.training.deep.data import SplitTensors

    data = SplitTensors(x, y, g, ["a", "b"], 2)
    method = build_method("embedding_smote", "mlp", data, model_params={"width": 8},
                          hparams={"by": by, "head_epochs": 3, "lr": 0.01}, seed=0)
    train(method, data, epochs=2, batch_size=32, seed=0)  # finish() ran after the loop
    features = {k: v.clone() for k, v in method.model.features.state_dict().items()}
    head = {k: v.clone() for k, v in method.model.classifier.state_dict().items()}
    with torch.no_grad():
        emb = method.model.features(x).numpy()
    strata = y.numpy() if by == "class" else y.numpy() * 2 + g.numpy()
    x_ref, s_ref = SMOTE(k_neighbors=5, random_state=0).fit_resample(emb, strata)
    x_res, y_res = method.resampled_
    assert np.allclose(x_res, x_ref, atol=1e-6)
    assert np.array_equal(y_res, s_ref if by == "class" else s_ref // 2)
    assert len(set(np.bincount(s_ref).tolist())) == 1  # every stratum as large as the largest
    # a second finish() refits only the head
    method.finish(data, seed=1)
    assert all(torch.equal(features[k], v) for k, v in
               method.model.features.state_dict().items())
    assert any(not torch.equal(head[k], v) for k, v in
               method.model.classifier.state_dict().items())


def _hand_mmd(a, b, kernel, length):
    def k(u, v):
        d = np.asarray(u) - np.asarray(v)
        # TF-MR's kernels: Gaussian exp(-||d||^2 / l^2), Laplacian exp(-||d|| / l)
        return (math.exp(-float(d @ d) / length ** 2) if kernel == "gaussian"
                else math.exp(-math.sqrt(float(d @ d)) / length))
    kaa = np.mean([k(u, v) for u in a for v in a])
    kbb = np.mean([k(u, v) for u in b for v in b])
    kab = np.mean([k(u, v) for u in a for v in b])
    return kaa + kbb - 2 * kab


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_mmd_zero_for_identical_positive_for_different_and_matches_hand(kernel):
    a = [[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]
    b = [[0.9, 0.1], [0.7, 0.3]]
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    assert float(mmd(ta, ta.clone(), kernel, 0.1)) == pytest.approx(0.0, abs=1e-6)
    value = float(mmd(ta, tb, kernel, 0.1))
    assert value > 0.05
    assert value == pytest.approx(_hand_mmd(a, b, kernel, 0.1), rel=1e-6, abs=1e-6)


def test_mindiff_in_batch_penalty_compares_the_two_groups_predictions():
    method = _method("mindiff", n_groups=3, hparams={"weight": 2.0, "group_a": 0,
                                                      "group_b": 2, "only_label": 1,
                                                      "stream": "in_batch"})
    x, y, _ = _batch(n=30)
    g = torch.arange(30) % 3
    loss, logs = method.objective(x, y, g)
    probs = torch.softmax(method.model(x), 1).detach().numpy()  # 3 classes: the vector
    keep = y.numpy() == 1
    a = probs[keep & (g.numpy() == 0)]
    b = probs[keep & (g.numpy() == 2)]
    assert logs["mmd"] == pytest.approx(_hand_mmd(a, b, "gaussian", 0.1), rel=1e-4, abs=1e-7)
    assert loss.item() == pytest.approx(logs["ce"] + 2.0 * logs["mmd"], rel=1e-5)
    with pytest.raises(TrustlabError, match="group_b must be a group id"):
        _method("mindiff", n_groups=2, hparams={"group_b": 5})


def test_mindiff_separate_stream_always_holds_both_groups_of_the_label():
    """TF-MR packs a separate MinDiff batch: rows of each group (of only_label) drawn
    from the whole training set, whatever the training batch holds."""
    n = 200
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 4, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    g = (torch.rand(n, generator=gen) < 0.1).long()  # group 1 is rare
    method = _method("mindiff", n_classes=2, hparams={"only_label": 0, "batch_size": 16})
    method.bind_data(x, y, g, seed=0)
    for _ in range(50):
        rows_a, rows_b = method.draw(16)
        assert len(rows_a) == len(rows_b) == 16
        assert (g[rows_a] == 0).all() and (g[rows_b] == 1).all()
        assert (y[rows_a] == 0).all() and (y[rows_b] == 0).all()
    # a training batch without group 1 still gets a non-zero penalty
    batch = torch.nonzero(g == 0).flatten()[:32]
    _, logs = method.objective(x[batch], y[batch], g[batch])
    assert logs["mmd"] > 0
    # binary task: the MMD compares the positive class's probability, as TF-MR's sigmoid
    method.bind_data(x, y, g, seed=3)
    rows_a, rows_b = method.draw(16)
    method.bind_data(x, y, g, seed=3)
    _, logs = method.objective(x[:8], y[:8], g[:8])
    with torch.no_grad():
        p = torch.softmax(method.model(x), 1)[:, 1:].numpy()
    assert logs["mmd"] == pytest.approx(
        _hand_mmd(p[rows_a.numpy()], p[rows_b.numpy()], "gaussian", 0.1), rel=1e-4, abs=1e-7)
    # a group with no row of the label cannot be compared: one clear error
    with pytest.raises(TrustlabError, match="no training rows of group 1 with label 0"):
        method.bind_data(x, y, torch.where(y == 0, 0, g), seed=0)


def test_flooding_loss_and_its_gradient_ascent_below_the_flood_level():
    x, y, g = _batch()
    with torch.no_grad():
        ce0 = F.cross_entropy(_method("erm").model(x), y).item()
    for b in (0.1, ce0 + 1.0):
        method = _method("flooding", hparams={"b": b})
        loss, logs = method.objective(x, y, g)
        assert loss.item() == pytest.approx(abs(logs["ce"] - b) + b, rel=1e-6)
    # Below the flood level (b > L) the step goes uphill: the training loss rises.
    method.update((x, y, g))
    with torch.no_grad():
        assert F.cross_entropy(method.model(x), y).item() > ce0


def test_hard_example_mining_backpropagates_exactly_the_top_k():
    method = _method("hard_example_mining", hparams={"keep_fraction": 0.25})
    x, y, g = _batch(n=12)
    loss, _ = method.objective(x, y, g)
    method.optimizer.zero_grad()
    loss.backward()
    got = [p.grad.clone() for p in method.model.parameters()]
    with torch.no_grad():
        losses = F.cross_entropy(method.model(x), y, reduction="none")
    top = torch.argsort(losses, descending=True)[:3]  # ceil(0.25 * 12) = 3
    method.model.zero_grad()
    F.cross_entropy(method.model(x[top]), y[top]).backward()
    for a, p in zip(got, method.model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    assert loss.item() == pytest.approx(float(losses[top].mean()), rel=1e-6)


def test_gradient_reversal_negates_and_scales_gradients():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64)
    out = gradient_reversal(x, 0.7)
    assert torch.equal(out, x)
    (out * w).sum().backward()
    assert torch.allclose(x.grad, -0.7 * w)
    method = _method("dann", hparams={"lambda": 0.7})
    disc_params = {id(p) for p in method.discriminator.parameters()}
    optimised = {id(p) for grp in method.optimizer.param_groups for p in grp["params"]}
    assert disc_params <= optimised  # the discriminator is trained too


def test_fgsm_has_linf_norm_epsilon_and_increases_the_loss():
    torch.manual_seed(0)
    model = make_model("mlp", (1, 8, 8), 10, width=16)
    x = 0.25 + 0.5 * torch.rand(16, 1, 8, 8)  # away from [0, 1]'s edges: no clipping
    y = torch.randint(0, 10, (16,))
    x_adv = fgsm_perturb(model, x, y, epsilon=0.1)
    delta = (x_adv - x).abs()
    assert float(delta.max()) == pytest.approx(0.1, abs=1e-6)
    assert torch.allclose(delta[delta > 0], torch.full_like(delta[delta > 0], 0.1), atol=1e-6)
    assert F.cross_entropy(model(x_adv), y).item() > F.cross_entropy(model(x), y).item()
    assert all(p.grad is None for p in model.parameters())
    x_pgd = pgd_perturb(model, x, y, epsilon=0.1, steps=5, step_size=0.03,
                        generator=torch.Generator().manual_seed(0))
    assert float((x_pgd - x).abs().max()) <= 0.1 + 1e-6
    assert F.cross_entropy(model(x_pgd), y).item() > F.cross_entropy(model(x), y).item()


def test_a_post_training_step_is_what_the_validation_score_sees(digits):
    """Model selection must score the model that is returned: after embedding SMOTE's head
    refit, not the last epoch before it."""
    from trustlab.training.deep import evaluate
    from trustlab.training.deep.search import validation_score

    tr, te = digits
    method = build_method("embedding_smote", "mlp", tr, model_params={"width": 16},
                          hparams={"head_epochs": 2}, seed=0)
    history = train(method, tr, te, epochs=1, batch_size=64, seed=0)
    final = evaluate(method, te)
    assert history.after_finish["val_accuracy"] == final["accuracy"]
    assert validation_score(history, "val_worst_group_accuracy") == \
        final["worst_group_accuracy"]
    erm = build_method("erm", "mlp", tr, model_params={"width": 16}, seed=0)
    assert train(erm, tr, te, epochs=1, batch_size=64, seed=0).after_finish == {}


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_adversarial_sampling_adds_perturbed_copies_of_the_minority_only(attack):
    m = _method("adversarial_sampling", hparams={"attack": attack, "epsilon": 0.05,
                                                 "copies": 2, "steps": 3})
    # class 2 is the induced minority: 2 rows of 40 (median count 19)
    y_train = torch.tensor([0] * 19 + [1] * 19 + [2] * 2)
    m.prepare(y_train, torch.zeros_like(y_train))
    assert m.minority_classes().tolist() == [2]
    x, _, g = _batch(n=12)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 0, 1])
    xa, ya = m.augment(x, y)
    minority = x[y == 2]
    assert len(ya) == 12 + 2 * len(minority)  # 2 copies of the 2 minority rows
    assert torch.equal(xa[:12], x) and torch.equal(ya[:12], y)
    assert (ya[12:] == 2).all()  # true labels kept, only the minority class
    copies = xa[12:].reshape(2, len(minority), -1)
    for c in copies:
        delta = (c - minority).abs()
        assert delta.max() <= 0.05 + 1e-6 and delta.max() > 0  # inside the epsilon ball
        assert (c >= 0).all() and (c <= 1).all()
    loss, logs = m.objective(x, y, g)
    assert logs["adversarial_rows"] == 4.0
    expected = F.cross_entropy(m.predict(xa), ya) if attack == "fgsm" else loss
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_spectral_decoupling_penalty_waits_for_anneal_steps():
    m = _method("spectral_decoupling", hparams={"lambda": 0.5, "anneal_steps": 2})
    x, y, g = _batch()
    for update in range(4):
        loss, logs = m.objective(x, y, g)
        logits = m.predict(x)
        ce = F.cross_entropy(logits, y)
        penalty = 0.25 * (logits ** 2).sum(dim=1).mean()
        want = ce if update < 2 else ce + penalty  # the authors' code: ERM first
        assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
        assert logs["penalty"] == pytest.approx(float(penalty.detach()), rel=1e-6)
