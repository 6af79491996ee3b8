"""Backdoor attacks: triggers, poisoning, the backdoored-model scenario and its metrics.

* :mod:`~.triggers` — the ``attacks`` registry (:data:`TRIGGERS`): BadNets ``patch`` and
  ``pattern``, ``blended``, ``sig`` (:mod:`~.sig`, clean label) and ``wanet``
  (:mod:`~.wanet`, a warp); :func:`stamp`;
* :mod:`~.poisoning` — :func:`poison` (all-to-one, with the trigger's candidates; copies
  beside the originals or, for SIG, in their place; WaNet's noise-mode rows);
* :mod:`~.scenario` — the defender's held-out rows, the backdoored model's training
  (cached per process) and :class:`BackdoorCase`, what a defense receives;
* :mod:`~.evaluation` — clean accuracy, attack success rate, robust accuracy.

Importing this package does not import torch (training and prediction import it).
"""

from trustlab.attacks.backdoor.evaluation import (backdoor_metrics, evaluate_backdoor,
                                                  predict_labels)
from trustlab.attacks.backdoor.poisoning import (PoisonedData, PoisonSettings, n_poison,
                                                 poison)
from trustlab.attacks.backdoor.scenario import (BackdoorCase, BackdoorTraining,
                                                DefenderSplit, build_backdoor,
                                                clear_model_cache, split_defender_rows,
                                                train_victim)
from trustlab.attacks.backdoor.triggers import (POSITIONS, TRIGGERS, BlendedTrigger,
                                                PatchTrigger, PatternTrigger, SquareTrigger,
                                                Trigger, make_trigger, resolve_position,
                                                stamp)

__all__ = ["BackdoorCase", "BackdoorTraining", "BlendedTrigger", "DefenderSplit",
           "POSITIONS", "PatchTrigger", "PatternTrigger", "PoisonSettings", "PoisonedData",
           "SquareTrigger", "TRIGGERS", "Trigger", "backdoor_metrics", "build_backdoor",
           "clear_model_cache", "evaluate_backdoor", "make_trigger", "n_poison", "poison",
           "predict_labels", "resolve_position", "split_defender_rows", "stamp",
           "train_victim"]
