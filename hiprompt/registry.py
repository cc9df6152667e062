"""Name registries for trainers, data sets and evaluators.

When Dassl is importable (and `HIPROMPT_RUNTIME` is not `builtin`), these are Dassl's own
registries, so the plug-ins in `trainers/` and `datasets/` appear in Dassl's `train.py`.
Otherwise they are the small built-in ones below, with the same `register`/`get` API.
"""

import os


class Registry:
    """A name -> class map filled by a `@REGISTRY.register()` decorator."""

    def __init__(self, name: str):
        self._name = name
        self._map = {}

    def register(self, obj=None, force: bool = False):
        def add(item):
            key = item.__name__
            if key in self._map and not force:
                raise KeyError(f"{key!r} is already registered in the {self._name} registry")
            self._map[key] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str):
        if name not in self._map:
            raise KeyError(
                f"no {name!r} in the {self._name} registry; registered: {sorted(self._map)}"
            )
        return self._map[name]

    def registered_names(self):
        return sorted(self._map)

    def __contains__(self, name):
        return name in self._map


def lookup(registry, name: str, key: str):
    """`registry.get(name)`, or a ValueError naming the setting `key` and what is registered
    (Dassl's registries and the built-in ones raise a bare KeyError)."""
    names = sorted(registry.registered_names())
    if name not in names:
        raise ValueError(f"{key}={name!r} is not registered; registered: {', '.join(names)}")
    return registry.get(name)


def _dassl_registries():
    mode = os.environ.get("HIPROMPT_RUNTIME", "auto")
    if mode not in ("auto", "dassl", "builtin"):
        raise ValueError(f"HIPROMPT_RUNTIME={mode!r}: expected auto, dassl or builtin")
    if mode == "builtin":
        return None
    try:
        from dassl.data.datasets import DATASET_REGISTRY as dataset_registry
        from dassl.engine import TRAINER_REGISTRY as trainer_registry
        from dassl.evaluation import EVALUATOR_REGISTRY as evaluator_registry
    except ImportError:
        if mode == "dassl":
            raise
        return None
    return trainer_registry, dataset_registry, evaluator_registry


_found = _dassl_registries()
USING_DASSL = _found is not None
if USING_DASSL:
    TRAINER_REGISTRY, DATASET_REGISTRY, EVALUATOR_REGISTRY = _found
else:
    TRAINER_REGISTRY = Registry("TRAINER")
    DATASET_REGISTRY = Registry("DATASET")
    EVALUATOR_REGISTRY = Registry("EVALUATOR")
