"""lmjax models as transformers checkpoints: the other direction of `lmjax.runs.importers.hf`.

One module per transformers class, each with the same interface:
- `HF_CLASS`: the class name transformers' `from_pretrained` builds;
- `unsupported(model) -> str | None`: None when the class expresses the model exactly, else a
  one-line reason naming the option it cannot express;
- `hf_config(model) -> dict`: config.json (with `architectures` and `model_type`);
- `state_dict(params, model) -> dict[str, np.ndarray]`: float32 tensors under transformers'
  names (`to_hf` casts them to the export's dtype and shards them).

An architecture tries its classes in order (a GPT is GPT-2 where it can be, else Llama); the
modules are imported by name, so one added later (llama.py) plugs in without changes here.
`to_hf.export_to_hf` writes a whole export.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lmjax.config import ModelConfig
from lmjax.errors import ConfigError

CLASSES = {"gpt": ("gpt2", "llama"), "bert": ("bert",), "t5": ("t5",)}  # modules, in order


def exporter_for(model: ModelConfig) -> ModuleType:
    """The first exporter whose class expresses the model; a one-line ConfigError with every
    class's reason when none does."""
    reasons = []
    for name in CLASSES.get(model.arch, ()):
        module = _module(name)
        if module is None:
            reasons.append(f"the {name} exporter is not installed")
            continue
        reason = module.unsupported(model)
        if reason is None:
            return module
        reasons.append(f"{module.HF_CLASS}: {reason}")
    if not reasons:
        raise ConfigError(f"model.arch={model.arch!r} has no transformers exporter; lmjax exports "
                          f"{', '.join(CLASSES)}")
    raise ConfigError(f"no transformers class can express this {model.arch} model: "
                      f"{'; '.join(reasons)}")


def _module(name: str) -> ModuleType | None:
    qualified = f"{__name__}.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as err:
        if err.name != qualified:  # the module exists but something it imports does not
            raise
        return None
