"""Backdoor defenses, one class per defense, registered by name (the ``defenses`` registry).

A defense is a :class:`~trustlab.defenses.base.Defense` subclass — ``name``, a ``Params``
declaration and one method, ``defend(case) -> DefenseOutcome`` — plus one line below
(or ``DEFENSES.register(MyDefense)`` from code, or an entry point in the group
``trustlab.defenses``)::

    class Relabel(Defense):
        \"\"\"Fine-tune on the defender's clean rows.\"\"\"

        name: ClassVar[str] = "relabel"

        class Params(registry.Params):
            epochs: int = Field(1, ge=1, description="fine-tuning epochs")

        def defend(self, case):
            model = finetune(copy.deepcopy(case.model), case.x_clean, case.y_clean,
                             epochs=self.epochs, lr=1e-3, batch_size=64, seed=self.seed,
                             n_classes=case.n_classes, device=self.device)
            return DefenseOutcome(metrics={"relabel.epochs": self.epochs}, model=model)

``trustlab list defenses`` shows each with its parameters. Importing this module does not
import torch.
"""

from __future__ import annotations

from typing import Any

from trustlab.defenses.base import Defense, DefenseOutcome, NoDefense, apply_defense, finetune
from trustlab.registry import Registry

DEFENSES = Registry("defenses", "defense", {
    "none": "trustlab.defenses.base:NoDefense",
    "neural_cleanse": "trustlab.defenses.neural_cleanse:NeuralCleanse",
    "unlearning": "trustlab.defenses.unlearning:Unlearning",
    "fine_pruning": "trustlab.defenses.fine_pruning:FinePruning",
    "spectral_signatures": "trustlab.defenses.spectral_signatures:SpectralSignatures",
    "activation_clustering": "trustlab.defenses.activation_clustering:ActivationClustering",
    "strip": "trustlab.defenses.strip:Strip",
})


def make_defense(name: str, params: dict[str, Any] | None = None, *, seed: int = 0,
                 device: Any = None) -> Defense:
    """The registered defense ``name`` with ``params`` (checked against its ``Params``)."""
    return DEFENSES.get(name)(seed=seed, device=device, **(params or {}))


__all__ = ["DEFENSES", "Defense", "DefenseOutcome", "NoDefense", "apply_defense",
           "finetune", "make_defense"]
