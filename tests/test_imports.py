"""Layering: importing anymlp is light, and lower layers never import higher ones."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "anymlp"


def test_import_anymlp_does_not_import_gpu_libraries():
    code = ("import sys, anymlp; print(sorted(m for m in ('cupy', 'torch', 'array_api_strict', 'matplotlib', 'tqdm', "
            "'numba', 'sklearn') if m in sys.modules))")  # scikit-learn: loaded with the estimators
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


LAYERS = {"_backend": 0, "exceptions": 0, "kernels": 1, "nn": 1, "optim": 1, "training": 2, "estimators": 3}


def _layer(module: str):
    parts = module.split(".")
    if parts[0] != "anymlp" or len(parts) < 2:
        return None
    return LAYERS.get(parts[1], 4)


def test_modules_import_only_from_layers_below():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        own = _layer(module)
        if own is None or path.name == "__init__.py" and own == 4:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("anymlp"):
                target = _layer(node.module)
                if target is not None and target > own:
                    offenders.append(f"{module} imports {node.module}")
    assert offenders == []


def _imported_roots(path):
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_math_layer_does_not_import_scikit_learn_or_scipy():
    for sub in ("kernels", "nn", "optim"):
        for path in (PACKAGE / sub).rglob("*.py"):
            assert not _imported_roots(path) & {"sklearn", "scipy"}, path


def test_the_helper_modules_are_attributes_of_a_bare_import():
    """README writes ``anymlp.datasets.load_mnist()`` and ``anymlp.plotting``: they load on first use."""
    code = ("import sys, anymlp\n"
            "assert 'matplotlib' not in sys.modules\n"
            "print(anymlp.datasets.load_mnist.__name__, anymlp.plotting.plot_learning_curves.__name__,\n"
            "      anymlp.progress.ProgressPrinter.__name__, hasattr(anymlp, 'no_such_thing'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["load_mnist", "plot_learning_curves", "ProgressPrinter", "False"]


def test_the_config_functions_show_their_defaults_in_words():
    import inspect

    import anymlp

    for function in (anymlp.set_config, anymlp.config_context):
        assert "object at 0x" not in str(inspect.signature(function))
        assert "backend=<unchanged>" in str(inspect.signature(function))


def test_numpy_work_goes_on_while_torch_is_half_imported_or_blocked():
    """Another thread importing torch (a first backend="torch" fit in a pool: 1-2 s) leaves a
    half-made module in sys.modules; ``sys.modules["torch"] = None`` is how a program blocks
    it. NumPy fits and predicts must not look into it, and a torch-trained model loads
    without it. (A torch model used while torch is half-imported waits on the import lock.)"""
    code = (
        "import pickle, sys, types, warnings, importlib.machinery\n"
        "import numpy as np\n"
        "warnings.simplefilter('ignore')\n"
        "from anymlp import MLPClassifier\n"
        "X = np.random.RandomState(0).standard_normal((60, 4)); y = (X[:, 0] > 0).astype(int)\n"
        "try:\n"
        "    import torch; backend = 'torch'\n"
        "except ImportError:\n"
        "    backend = None\n"
        "saved = pickle.dumps(MLPClassifier((4,), max_iter=2, random_state=0, backend=backend).fit(X, y))\n"
        "half = types.ModuleType('torch')\n"
        "half.__spec__ = importlib.machinery.ModuleSpec('torch', None)\n"
        "half.__spec__._initializing = True\n"
        "for torch in (half, None):\n"
        "    sys.modules['torch'] = torch\n"
        "    model = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)\n"
        "    model.partial_fit(X, y); model.predict_proba(X)\n"
        "pickle.loads(saved).predict(X)  # (blocked torch: on NumPy, with a warning)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
