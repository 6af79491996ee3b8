"""Attack4Good: fairness poisoning, i.e. poisoning points that make a third party's model
*fairer*.

Bi-level problem ``argmin_h g(w*(h), h)  s.t.  w*(h) in argmin_w f(w, h)``:

* inner ``f``: the victim (a scikit-learn estimator with default hyper-parameters, built by
  a factory) is refit from scratch on ``train + h`` for every candidate ``h``;
* outer ``g`` (:mod:`.objective`): a fairness gap of the refit victim on a held-out
  validation split — ``fpr_difference`` (max - min of the per-group false positive rates,
  i.e. ``|FPR_unpriv - FPR_priv|`` for a binary group; fairlearn's
  ``false_positive_rate_difference``) or ``demographic_parity_difference`` — plus a penalty
  when an ``accuracy_floor`` is set and the candidate's validation accuracy falls below it.

The poison ``h`` (:mod:`.space`) is ``n_points`` rows of the *encoded* feature space
(one-hot categoricals, standardized numerics) with a label and a group each. The search
space is the feature box of the training data:

* numeric columns: a float in ``[min, max]`` of the training column;
* one-hot blocks: a categorical choice of one level per block (TPE handles categoricals
  natively; the gradient optimizer relaxes a block to a softmax and takes its argmax), so a
  poison row is always a valid one-hot encoding;
* the sensitive attribute's block (when it is a model input) is set by the point's group,
  which is fixed (``privileged``/``unprivileged``) or optimized; labels likewise.

:func:`prepare` (:mod:`.data`) builds the splits and the space from a dataset,
:func:`make_objective` the outer objective, and :func:`attack` runs an outer optimizer of
the ``optimizers`` registry (:mod:`.optimizers`: ``bayesian``, ``random``, ``gradient``),
each making exactly ``n_trials`` victim evaluations::

    data = prepare(ds, "sex", privileged="Male", val_fraction=0.3, n_points=20,
                   poison_label=1, poison_group="unprivileged", seed=0)
    objective = make_objective(data, lambda: make_model("random_forest", seed=0),
                               objective="fpr_difference")
    result = attack(objective, data.space, optimizer="bayesian", n_trials=30, seed=0)
"""

from trustlab.attacks.fairness_poisoning.data import (PoisoningData, Split, check_dataset,
                                                      group_values, make_objective,
                                                      prepare, sensitive_feature)
from trustlab.attacks.fairness_poisoning.objective import (FLOOR_PENALTY, OBJECTIVES,
                                                           Evaluation, Objective,
                                                           PoisonObjective, fairness_gaps)
from trustlab.attacks.fairness_poisoning.optimizers import (OPTIMIZERS, AttackResult,
                                                            Optimizer, attack)
from trustlab.attacks.fairness_poisoning.settings import (AttackSettings, PoisonGroup,
                                                          PoisonLabel)
from trustlab.attacks.fairness_poisoning.space import FeatureBox, PoisonSet, PoisonSpace

__all__ = ["AttackResult", "AttackSettings", "Evaluation", "FLOOR_PENALTY", "FeatureBox",
           "OBJECTIVES", "OPTIMIZERS", "Objective", "Optimizer", "PoisonGroup",
           "PoisonLabel", "PoisonObjective", "PoisonSet", "PoisonSpace", "PoisoningData",
           "Split", "attack", "check_dataset", "fairness_gaps", "group_values", "make_objective", "prepare",
           "sensitive_feature"]
