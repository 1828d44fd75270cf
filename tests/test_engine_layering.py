"""The training engine sits below evaluation: no module of `lmjax.train` imports `lmjax.eval`,
not even lazily inside a function (the evaluation callback is passed in by whoever builds
the run: `lmjax train`, the sweep worker, a library user)."""

import ast
import pathlib

import lmjax.train

TRAIN = pathlib.Path(lmjax.train.__file__).parent


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module an import statement anywhere in the file names (nested ones included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_train_module_imports_eval():
    offenders = {path.name: sorted(m for m in imported_modules(path) if m.startswith("lmjax.eval"))
                 for path in sorted(TRAIN.glob("*.py"))}
    assert not {name: mods for name, mods in offenders.items() if mods}


def test_the_loop_keeps_no_legacy_trainer():
    from lmjax.train import loop

    assert not hasattr(loop, "Trainer")
