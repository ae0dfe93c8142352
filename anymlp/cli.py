"""``anymlp`` on the command line: ``anymlp train`` (MNIST) and ``anymlp info``.

Every estimator parameter is an option of ``train``, generated from
``MLPClassifier().get_params()`` and ``MLPClassifier._parameter_constraints``: the
constraints decide how a string is read (``StrOptions`` -> one of its strings,
``Interval(Integral)`` -> int, ``Interval(Real)`` -> float, ``"boolean"`` -> flag,
``"array-like"`` -> ``512,256``) and are checked right away with the constraint objects
themselves, so a bad value fails before any data is loaded. There is no second copy of
the parameter definitions here: a parameter added to the estimator appears as an option.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import json
import os
import pickle
import platform
import re
import sys
import time
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "estimator_params", "CLI_DEFAULTS", "ALIASES"]

#: Where ``anymlp train`` departs from the estimator's own defaults, and why.
CLI_DEFAULTS = {
    "max_iter": 15,  # ~97.7% test accuracy on MNIST, about a second per epoch on a laptop CPU
    "batch_size": 200,  # what "auto" means on MNIST, written out so it shows in --help
    "random_state": 0,  # a command line run should be repeatable
}
#: Short spellings, in addition to the generated ``--hidden-layer-sizes`` etc.
ALIASES = {
    "hidden_layer_sizes": ["--hidden"],
    "max_iter": ["--epochs"],
    "learning_rate_init": ["--lr"],
    "random_state": ["--seed"],
}
#: Options owned by ``train`` itself; an estimator parameter of the same name is not generated.
_TRAIN_OPTIONS = {"data", "dataset", "no_download", "limit", "dtype", "save", "report", "quiet"}

_EPILOG = """\
Every MLPClassifier parameter is an option: --max-iter or --max_iter, --early-stopping
[BOOL] / --no-early-stopping, --hidden 512,256, --batch-size auto, --random-state none.
MNIST is looked for in --data, $ANYMLP_DATA/mnist.npz, the scikit-learn data home, then
downloaded from OpenML; without it (and without --data) training falls back to
scikit-learn's bundled 8x8 digits.
"""


# ---------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    """Run ``anymlp`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        parser = build_parser()  # (loads scikit-learn, 1-2 s, for the estimator's parameters)
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        print("anymlp: interrupted", file=sys.stderr)
        return 130
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args, out=sys.stdout)
    except BrokenPipeError:  # `anymlp train | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:  # before training started (loading data, importing): nothing to keep
        print(f"anymlp {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # a user's mistake (BackendUnavailableError is a ValueError)
        if os.environ.get("ANYMLP_DEBUG", "").strip() not in ("", "0"):
            raise  # the whole traceback, for a bug report
        print(f"anymlp {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _normalize_option_names(argv):
    """Accept scikit-learn's spelling too: ``--max_iter=5`` is ``--max-iter=5``."""
    def fix(token):
        if not token.startswith("--"):
            return token
        name, sep, value = token.partition("=")
        return name.replace("_", "-") + sep + value

    return [fix(token) for token in argv]


class _Parser(argparse.ArgumentParser):
    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else args
        return super().parse_known_args(_normalize_option_names(args), namespace)

    def error(self, message):
        """One line, not the whole usage (train's is some twenty lines); exit status 2, as for
        any command-line usage error."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _estimator_class():
    from anymlp import MLPClassifier

    return MLPClassifier


def build_parser(estimator_class=None) -> argparse.ArgumentParser:
    """The ``anymlp`` parser, with ``train`` options generated from ``estimator_class``."""
    estimator_class = estimator_class or _estimator_class()
    parser = _Parser(
        prog="anymlp", description="scikit-learn's MLP on NumPy, CuPy or PyTorch."
    )
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="{train,info}")

    train = commands.add_parser(
        "train",
        help="train an MLPClassifier on MNIST and report test accuracy",
        description="Train an MLPClassifier on MNIST (pixels scaled to [0, 1]) and report "
        "its accuracy on the 10000 test images.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.set_defaults(command="train", run=_run_train, estimator_class=estimator_class)
    _add_train_options(train)
    _add_estimator_options(train, estimator_class)

    info = commands.add_parser(
        "info", help="show array libraries, GPUs and versions", description="Show array "
        "libraries, usable GPUs and library versions."
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(command="info", run=_run_info)
    return parser


def _add_train_options(parser):
    group = parser.add_argument_group("data and output")
    group.add_argument("--data", metavar="PATH", help="an mnist.npz file (or its folder)")
    group.add_argument(
        "--dataset", choices=["auto", "mnist", "digits"], default="auto",
        help="auto: MNIST, else the 8x8 digits; mnist: fail without MNIST (default: auto)",
    )
    group.add_argument("--no-download", action="store_true", help="never download MNIST")
    group.add_argument("--limit", type=_positive_int, metavar="N", help="train on the first N rows only")
    group.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32",
        help="floating dtype of the data (default: float32)",
    )
    group.add_argument("--save", metavar="FILE", help="save the fitted model with joblib")
    group.add_argument("--report", metavar="DIR", help="write PNG plots and report.md into DIR")
    group.add_argument("--quiet", "-q", action="store_true", help="print only the final results")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


# ---------------------------------------------------------------------------
# Estimator options, generated from get_params() and _parameter_constraints


def _add_estimator_options(parser, estimator_class):
    defaults = estimator_class().get_params()
    constraints = getattr(estimator_class, "_parameter_constraints", {})
    docs = _parameter_docs(estimator_class)
    group = parser.add_argument_group(
        f"{estimator_class.__name__} parameters",
        "Unset options keep the estimator's default, except where 'anymlp train' says otherwise.",
    )
    for name, default in defaults.items():
        if name in _TRAIN_OPTIONS:
            continue
        flags = [f"--{name.replace('_', '-')}", *ALIASES.get(name, [])]
        spec = _constraint_list(constraints.get(name))
        shown = CLI_DEFAULTS.get(name, default)
        help_text = f"{docs.get(name, '')} Default: {_show(shown)}".strip()
        if name in CLI_DEFAULTS:
            help_text += f" (estimator: {_show(default)})"
        help_text = help_text.replace("%", "%%")
        kwargs = dict(dest=f"param:{name}", default=argparse.SUPPRESS, help=help_text)
        if _is_flag(spec):
            group.add_argument(*flags, nargs="?", const=True, metavar="BOOL",
                               type=_converter(name, spec), **kwargs)
            group.add_argument(f"--no-{name.replace('_', '-')}", action="store_const",  # --no-shuffle, --no-verbose
                               const=False, dest=f"param:{name}", default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)
        else:
            group.add_argument(*flags, metavar=_metavar(name, spec),
                               type=_converter(name, spec), **kwargs)


def estimator_params(args: argparse.Namespace) -> dict:
    """The estimator keyword arguments chosen by ``args``: given options over :data:`CLI_DEFAULTS`."""
    given = {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("param:")}
    valid = args.estimator_class().get_params()
    params = {k: v for k, v in CLI_DEFAULTS.items() if k in valid}
    params.update(given)
    if "dtype" in valid and "dtype" not in params:
        params["dtype"] = args.dtype
    return params


def _constraint_list(spec) -> list:
    """Constraints as a list; ``[]`` for none to go by (absent or ``"no_validation"``)."""
    if spec is None or spec == "no_validation":
        return []
    return list(spec) if isinstance(spec, (list, tuple)) else [spec]


def _is_flag(spec) -> bool:
    return "boolean" in spec or "verbose" in spec


def _metavar(name, spec):
    if name == "callbacks":
        return "MODULE:NAME[,...]"
    words = []
    for constraint in spec:
        if _is_str_options(constraint):
            words += sorted(constraint.options - getattr(constraint, "internal", set()))
        elif constraint is None:
            words.append("none")
        elif constraint == "array-like":
            return "N[,N...]"
        elif constraint is str:
            words.append(name.upper())
        elif _is_interval(constraint):
            words.append("INT" if constraint.type is Integral else "FLOAT")
        elif constraint == "random_state":
            words += ["INT", "none"]
        elif _is_options(constraint):
            words += sorted(str(o) for o in constraint.options)
    words = list(dict.fromkeys(words))
    return ("{" + ",".join(words) + "}" if len(words) > 1 else words[0]) if words else name.upper()


def _converter(name, spec):
    """A function reading a string as a value satisfying one of ``spec`` (checked)."""
    from sklearn.utils._param_validation import make_constraint

    checks = [make_constraint(c) for c in spec]

    def convert(text):
        if name == "callbacks":
            return _load_callbacks(text)
        for raw, check in zip(spec, checks):
            for read in _readers(raw):
                try:
                    value = read(text)
                except (ValueError, TypeError, SyntaxError):
                    continue
                if check.is_satisfied_by(value) and _items_fit(raw, value, spec, checks):
                    return value
        if not spec:  # nothing to go by (e.g. device="cuda:1"): none, else the string
            return None if _parse_none_or(text) else text
        expected = " or ".join(_in_words(raw, check) for raw, check in zip(spec, checks)
                               if not getattr(check, "hidden", False))
        word = "choice" if all(_is_str_options(c) or c is None for c in spec) else "value"
        raise argparse.ArgumentTypeError(f"invalid {word}: {text!r} (expected {expected})")

    convert.__name__ = name  # argparse names the converter in some messages
    return convert


def _in_words(raw, check) -> str:
    """A constraint as a command line user reads it: what to type, not Python types."""
    if raw == "boolean":
        return "true or false (yes/no, 1/0)"
    if raw == "random_state":
        return "a seed from 0 to 4294967295, or none"
    return str(check)


def _items_fit(raw, value, spec, checks) -> bool:
    """An array-like offered next to scalar constraints holds such scalars (``hidden_layer_sizes``)."""
    if raw != "array-like":
        return True
    scalar = [check for c, check in zip(spec, checks) if _is_interval(c) or _is_options(c)]
    if any(isinstance(item, bool) for item in value):
        return False  # True is an int to Python, not a layer size
    return not scalar or all(any(check.is_satisfied_by(item) for check in scalar) for item in value)


def _readers(constraint):
    """Ways to read a string for one raw constraint, tried in order."""
    from sklearn.utils._param_validation import RealNotInt

    numbers = {Integral: int, int: int, Real: float, float: float, RealNotInt: float}
    if constraint is None:
        return [_parse_none]
    if _is_str_options(constraint):
        return [str]
    if _is_interval(constraint) or _is_options(constraint):
        return [numbers.get(constraint.type, _literal)]
    if constraint == "boolean":
        return [_parse_bool]
    if constraint == "verbose":
        return [int, _parse_bool]
    if constraint == "random_state":
        return [int, _parse_none]
    if constraint == "array-like":
        return [_parse_sequence]
    if constraint in (str, bool, list, tuple):
        return [{str: str, bool: _parse_bool, list: lambda t: list(_parse_sequence(t)),
                 tuple: _parse_sequence}[constraint]]
    return [numbers[constraint]] if constraint in numbers else []


def _is_str_options(c):
    from sklearn.utils._param_validation import StrOptions

    return isinstance(c, StrOptions)


def _is_options(c):
    from sklearn.utils._param_validation import Options

    return isinstance(c, Options) and not _is_str_options(c)


def _is_interval(c):
    from sklearn.utils._param_validation import Interval

    return isinstance(c, Interval)


def _parse_none(text):
    if text.strip().lower() in {"none", "null"}:
        return None
    raise ValueError(text)


def _parse_bool(text):
    word = str(text).strip().lower()
    if word in {"1", "true", "yes", "on", "y", "t"}:
        return True
    if word in {"0", "false", "no", "off", "n", "f"}:
        return False
    raise ValueError(text)


def _parse_sequence(text):
    """``"512,256"``, ``"(512, 256)"`` or ``"512 256"`` -> ``(512, 256)``; ``"100"`` -> ``(100,)``.

    Commas and spaces both separate items: "512 256" read as one item would be a layer of
    512256 units.
    """
    items = text.strip().strip("()[]").replace(",", " ").split()
    if not items:
        raise ValueError(text)
    return tuple(_literal(item) for item in items)


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _load_callbacks(text):
    """``pkg.mod:Name[,...]``: each ``Name`` is instantiated when it is a class."""
    if _parse_none_or(text):
        return None
    callbacks = []
    for spec in filter(None, (part.strip() for part in text.split(","))):
        module_name, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"cannot import callback {spec!r}: {exc}") from exc
        callbacks.append(obj() if isinstance(obj, type) else obj)
    from anymlp.training.callbacks import check_callbacks

    try:
        check_callbacks(callbacks)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return callbacks


def _parse_none_or(text):
    try:
        _parse_none(text)
    except ValueError:
        return False
    return True


def _show(value):
    return "none" if value is None else ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _parameter_docs(estimator_class) -> dict:
    """First sentence of each parameter's numpydoc entry, for --help.

    anymlp documents only what it adds to scikit-learn, so scikit-learn's class of the
    same name (the specification) fills in the rest.
    """
    import sklearn.neural_network

    docs = {}
    for cls in (getattr(sklearn.neural_network, estimator_class.__name__, None), estimator_class):
        doc = (inspect.getdoc(cls) or "") + "\n" if cls is not None else ""  # dedented
        section = doc.split("Attributes\n", 1)[0]
        for match in re.finditer(r"^(\w+) : [^\n]*\n((?: {4}[^\n]*\n|\n)*)", section, re.M):
            text = re.sub(r":\w+:`~?([^`]+)`|``([^`]+)``", lambda m: m.group(1) or m.group(2),
                          " ".join(match.group(2).split("\n\n")[0].split()))
            docs[match.group(1)] = re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]
    if "callbacks" in docs:
        docs["callbacks"] += (" Given as import paths MODULE:NAME, comma-separated; a class is"
                              " instantiated. The progress printer is added unless --quiet.")
    return docs


# ---------------------------------------------------------------------------
# anymlp train


def _run_train(args, out) -> int:
    from anymlp.datasets import MNISTNotFoundError

    started = time.perf_counter()
    out = _ReaderMayLeave(out)
    params = estimator_params(args)
    _check_before_loading(args, params)
    try:
        X_train, y_train, X_test, y_test, dataset = _load_data(args, out)
    except MNISTNotFoundError as exc:
        print(f"anymlp train: error: {str(exc).replace('or pass path=.', 'or pass --data FILE.')}", file=sys.stderr)
        return 1
    if args.limit:
        X_train, y_train = X_train[: args.limit], y_train[: args.limit]
        if "param:batch_size" not in vars(args):
            # The CLI's own 200 is MNIST's "auto"; on fewer rows (and early stopping's share of
            # them) "auto" itself, without a warning about a setting the user never made.
            params["batch_size"] = "auto"

    from anymlp.progress import ProgressPrinter

    user_callbacks = list(params.pop("callbacks", None) or [])
    progress = [] if args.quiet else [ProgressPrinter(out)]
    estimator = args.estimator_class(**params, callbacks=(user_callbacks + progress) or None)
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    if not args.quiet:
        say(f"training {type(estimator).__name__}(hidden_layer_sizes={estimator.hidden_layer_sizes!r}, "
            f"solver={estimator.solver!r}) on {dataset['name']}: "
            f"{X_train.shape[0]} x {X_train.shape[1]} {X_train.dtype}, "
            f"up to {estimator.max_iter} epochs")
    with contextlib.redirect_stdout(out):  # the estimator's verbose lines too
        seconds, interrupted = _fit(estimator, X_train, y_train, say, quiet=args.quiet)
    if interrupted and not getattr(estimator, "n_iter_", 0):
        # Its initial weights: nothing worth evaluating, and saving it could replace a good model.
        say("interrupted before the first epoch completed: nothing evaluated or saved (exit status 130)")
        return 130
    if interrupted:
        say("interrupted: the model is the one of the last completed epoch "
            "(evaluated and saved as asked; exit status 130)")
    accuracy = float(np.mean(_host(estimator.predict(X_test)) == y_test))
    estimator.set_params(callbacks=user_callbacks or None)  # streams do not pickle

    where = _describe_backend(estimator, params, X_test)
    n_iter = getattr(estimator, "n_iter_", "?")
    say(f"test accuracy {accuracy:.4f} ({len(y_test)} samples)")
    say(f"trained in {seconds:.1f} s ({n_iter} epochs, {X_train.shape[0]} samples), "
        f"total {time.perf_counter() - started:.1f} s")
    say(f"backend {where}")
    if args.save:
        _save_model(estimator, Path(args.save))
        say(f"model saved to {args.save}")
    if args.report:
        from anymlp.plotting import write_report

        summary = {
            "dataset": dataset["name"],
            "training samples": X_train.shape[0],
            "test accuracy": f"{accuracy:.4f}",
            "epochs": n_iter,
            "fit time": f"{seconds:.1f} s",
            "backend": where,
        }
        files = write_report(estimator, X_test, y_test, args.report,
                             image_shape=dataset["image_shape"], summary=summary)
        say(f"report written to {files['report']}")
    if out.left:
        raise BrokenPipeError  # after the work was done and saved: main exits as for `| head`
    return 130 if interrupted else 0  # the shell's code for Ctrl-C: a script can tell


class _ReaderMayLeave:
    """``out`` for a run's lines, its progress and scikit-learn's verbose output: a reader
    that left (``anymlp train | head``) stops the writing, not the training, the saving or
    the report. ``left`` says it happened."""

    def __init__(self, out):
        self._out, self.left = out, False

    def write(self, text: str) -> int:
        if not self.left:
            try:
                self._out.write(text)
            except BrokenPipeError:
                self.left = True
        return len(text)

    def flush(self) -> None:
        if not self.left:
            try:
                self._out.flush()
            except BrokenPipeError:
                self.left = True

    def __getattr__(self, name):  # isatty, encoding, fileno, ...: tqdm sizes and draws its bar by them
        return getattr(self._out, name)


def _save_model(estimator, path: Path) -> None:
    """joblib's dump of the model, without the --callbacks objects (they were for training,
    and loading would need their modules), written beside ``path`` and then moved onto it:
    a dump that fails leaves a model saved there before as it was. Compressed by the
    file name's extension, as joblib does."""
    import joblib

    path = Path(os.path.realpath(path))  # through a symlink (latest.joblib -> v3.joblib), not over it
    path.parent.mkdir(parents=True, exist_ok=True)
    # The same last suffix: joblib compresses by it (.gz, .bz2, .xz, .lzma, .z).
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    callbacks = estimator.callbacks
    estimator.set_params(callbacks=None)
    try:
        joblib.dump(estimator, partial)
        os.replace(partial, path)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:  # something in the model would not pickle
        raise ValueError(f"could not save the model to {path}: {exc}") from exc
    except OSError as exc:  # the disk, not the model; named by the user's path, not the temporary one
        raise OSError(f"could not save the model to {path}: {exc.strerror or exc}") from exc
    finally:
        estimator.set_params(callbacks=callbacks)
        partial.unlink(missing_ok=True)


def _check_before_loading(args, params):
    """What would otherwise fail after loading the data, or after training: the settings
    (environment included), the backend and device asked for, and where results go."""
    import anymlp
    from anymlp._backend import resolve_backend

    if args.data and args.dataset == "digits":
        raise ValueError(f"--data {args.data} names MNIST, but --dataset digits asks for the bundled digits; "
                         "drop one of them.")
    anymlp.get_config()  # ANYMLP_* values from the environment
    resolve_backend(np.empty((1, 1)), backend=params.get("backend"), device=params.get("device"))
    for option, path, kind in (("--save", args.save, "file"), ("--report", args.report, "folder")):
        if path is None:
            continue
        target = Path(path)
        if kind == "file" and (target.is_dir() or path.endswith(("/", os.sep))):
            raise ValueError(f"{option} {path}: there is a folder there; give a file path.")
        if kind == "folder" and target.exists() and not target.is_dir():
            raise ValueError(f"{option} {path}: there is a file there; give a folder path.")
        folder = target.parent if kind == "file" else target
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise ValueError(f"{option} {path}: {existing} is a file, so no folder can be made there.")
        if not os.access(existing, os.W_OK):
            raise ValueError(f"{option} {path}: cannot write under {existing}.")


def _load_data(args, out):
    """``(X_train, y_train, X_test, y_test, dataset)``, X scaled to [0, 1] in ``args.dtype``."""
    from anymlp.datasets import MNISTNotFoundError, load_digits_split, load_mnist

    dtype = np.dtype(args.dtype)
    choice = "mnist" if args.data and args.dataset == "auto" else args.dataset
    if choice != "digits":
        try:
            data = load_mnist(args.data, download=not args.no_download, dtype=dtype, scale=True)
            return (*data, {"name": "MNIST", "image_shape": (28, 28)})
        except MNISTNotFoundError:
            if choice == "mnist":
                raise
            # Said even with --quiet (on stderr then): the accuracy printed is not MNIST's.
            print("notice: MNIST not found (--dataset mnist says where it looked); "
                  "using scikit-learn's 8x8 digits instead", file=sys.stderr if args.quiet else out, flush=True)
    data = load_digits_split(dtype=dtype)
    return (*data, {"name": "digits (8x8)", "image_shape": (8, 8)})


def _fit(estimator, X, y, say, quiet=False) -> tuple[float, bool]:
    """Fit; returns (seconds, interrupted). The expected 'max_iter reached' warning becomes one
    line of advice, and Ctrl-C (which keeps the last completed epoch) one line saying so."""
    from sklearn.exceptions import ConvergenceWarning

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        # Recorded whatever the user's filters (PYTHONWARNINGS=ignore): it decides the exit status.
        warnings.filterwarnings("always", message="Training interrupted by user")
        estimator.fit(X, y)
    seconds = time.perf_counter() - start
    interrupted = False
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            if not quiet:
                say(f"note: stopped at max_iter={estimator.max_iter} before converging "
                    "(more with --epochs N)")
        elif str(w.message).startswith("Training interrupted by user"):
            interrupted = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return seconds, interrupted


def _host(array):
    try:
        from anymlp._backend import to_host
    except ImportError:  # pragma: no cover - layer 0 is always there in a release
        return np.asarray(array)
    return np.asarray(to_host(array))


def _describe_backend(estimator, params, X) -> str:
    """Where the fit ran, e.g. ``torch on cuda:0``."""
    fitted = getattr(estimator, "backend_", None)
    for candidate in (fitted, getattr(estimator, "_backend", None)):
        if hasattr(candidate, "describe"):  # anymlp._backend.Backend
            return candidate.describe()
    if fitted is not None:
        return f"{fitted} on {getattr(estimator, 'device_', None) or params.get('device') or 'cpu'}"
    try:
        from anymlp._backend import resolve_backend

        return resolve_backend(X[:1], backend=params.get("backend"), device=params.get("device")).describe()
    except Exception:  # noqa: BLE001 - a description must never fail the run
        return f"{params.get('backend') or 'numpy'} on {params.get('device') or 'cpu'}"


# ---------------------------------------------------------------------------
# anymlp info


def collect_info() -> dict:
    """Installed array namespaces, usable GPUs and library versions. Never raises."""
    from importlib import metadata

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    try:
        from anymlp._backend import available_backends

        namespaces = available_backends()
    except Exception:  # noqa: BLE001
        namespaces = {"numpy": version("numpy"), "cupy": version("cupy-cuda12x") or version("cupy-cuda13x"),
                      "torch": version("torch"), "array_api_strict": version("array-api-strict")}
    import anymlp

    return {
        "anymlp": getattr(anymlp, "__version__", None) or version("anymlp"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "namespaces": namespaces,
        "gpus": _gpus(),
        "libraries": {dist: version(dist) for dist in
                      ["numpy", "scipy", "scikit-learn", "array-api-compat", "joblib",
                       "matplotlib", "tqdm"]},
    }


def _gpus() -> list[dict]:
    try:
        from anymlp._backend import gpu_info

        return list(gpu_info())
    except Exception:  # noqa: BLE001 - no driver, a broken install: no usable GPU
        return []


def _run_info(args, out) -> int:
    info = collect_info()
    if args.json:
        json.dump(info, out, indent=2, default=str)
        print(file=out)
        return 0
    print(f"anymlp {info['anymlp'] or 'unknown'} (python {info['python']}, {info['platform']})", file=out)
    print("\narray namespaces", file=out)
    for name, ver in info["namespaces"].items():
        print(f"  {name:<18} {ver or 'not installed'}", file=out)
    print("\nGPU", file=out)
    if not info["gpus"]:
        print("  none usable (no CUDA device seen by CuPy or torch)", file=out)
    for index, gpu in enumerate(info["gpus"]):
        memory = gpu.get("memory_bytes", gpu.get("memory"))
        size = f"{memory / 2**30:.1f} GiB" if isinstance(memory, (int, float)) else "memory unknown"
        print(f"  cuda:{index:<3} {gpu.get('name', '?')}  {size}  (via {gpu.get('library', '?')})", file=out)
    print("\nlibraries", file=out)
    for dist, ver in info["libraries"].items():
        print(f"  {dist:<18} {ver or 'not installed'}", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
