"""anymlp.cli and anymlp.progress: generated options, a real tiny training run, info."""

import io
import json
import math
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest

from anymlp import MLPClassifier
from anymlp.cli import ALIASES, CLI_DEFAULTS, build_parser, estimator_params, main
from anymlp.progress import ProgressPrinter, format_epoch


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def _params(parser, *options):
    return estimator_params(parser.parse_args(["train", *options]))


def _train_data_options():
    """Real MNIST when $ANYMLP_DATA holds it, else the bundled digits (no download)."""
    folder = os.environ.get("ANYMLP_DATA")
    if folder and (Path(folder) / "mnist.npz").is_file():
        return ["--dataset", "mnist", "--no-download"], "MNIST", 784
    return ["--dataset", "digits"], "digits", 64


# ---------------------------------------------------------------------------
# Options generated from get_params() and _parameter_constraints


def test_every_parameter_has_an_option(parser):
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions}
    names = MLPClassifier().get_params()
    assert {f"param:{name}" for name in names} <= dests
    flags = {flag for action in train._actions for flag in action.option_strings}
    assert {f"--{name.replace('_', '-')}" for name in names} <= flags
    assert {alias for aliases in ALIASES.values() for alias in aliases} <= flags


def test_defaults_are_the_cli_defaults_only(parser):
    assert _params(parser) == CLI_DEFAULTS
    estimator = MLPClassifier(**CLI_DEFAULTS)
    estimator._validate_params()  # the CLI's defaults are valid estimator values


def test_aliases(parser):
    params = _params(parser, "--hidden", "512,256", "--epochs", "3", "--lr", "0.01", "--seed", "7",
                     "--batch-size", "64", "--backend", "numpy", "--device", "cpu")
    assert params["hidden_layer_sizes"] == (512, 256)
    assert params["max_iter"] == 3 and isinstance(params["max_iter"], int)
    assert params["learning_rate_init"] == 0.01
    assert params["random_state"] == 7
    assert params["batch_size"] == 64
    assert params["backend"] == "numpy" and params["device"] == "cpu"


@pytest.mark.parametrize(
    "options, name, expected",
    [
        (["--solver", "sgd"], "solver", "sgd"),
        (["--activation", "tanh"], "activation", "tanh"),
        (["--early-stopping"], "early_stopping", True),
        (["--early-stopping", "false"], "early_stopping", False),
        (["--early-stopping=yes"], "early_stopping", True),
        (["--no-shuffle"], "shuffle", False),
        (["--nesterovs-momentum", "0"], "nesterovs_momentum", False),
        (["--batch-size", "auto"], "batch_size", "auto"),
        (["--n-iter-no-change", "inf"], "n_iter_no_change", math.inf),
        (["--n-iter-no-change", "3"], "n_iter_no_change", 3),
        (["--random-state", "none"], "random_state", None),
        (["--max_iter=4"], "max_iter", 4),  # scikit-learn's spelling
        (["--alpha", "1e-3"], "alpha", 1e-3),
        (["--verbose"], "verbose", True),
        (["--verbose", "2"], "verbose", 2),
        (["--hidden-layer-sizes", "(30, 20)"], "hidden_layer_sizes", (30, 20)),
        (["--hidden", "64"], "hidden_layer_sizes", (64,)),
        (["--validation-fraction", "0.2"], "validation_fraction", 0.2),
    ],
)
def test_values_are_read_by_their_constraints(parser, options, name, expected):
    params = _params(parser, *options)
    assert params[name] == expected
    assert type(params[name]) is type(expected)


def test_every_option_builds_a_valid_estimator(parser):
    params = _params(parser, "--solver", "sgd", "--learning-rate", "adaptive", "--momentum", "0.5",
                     "--no-nesterovs-momentum", "--early-stopping", "--n-iter-no-change", "inf",
                     "--hidden", "8,4", "--tol", "0", "--max-fun", "10", "--beta-1", "0.5",
                     "--beta-2", "0.9", "--epsilon", "1e-7", "--power-t", "0.3", "--warm-start",
                     "--backend", "none", "--device", "none", "--callbacks", "none")
    MLPClassifier(**params)._validate_params()


@pytest.mark.parametrize(
    "options, pattern",
    [
        (["--solver", "newton"], r"argument --solver: invalid choice: 'newton'.*adam"),
        (["--lr", "-1"], r"argument --learning-rate-init/--lr: invalid value: '-1'.*range"),
        (["--epochs", "0"], r"argument --max-iter/--epochs: invalid value: '0'"),
        (["--epochs", "2.5"], r"--max-iter/--epochs: invalid value"),
        (["--hidden", "a,b"], r"--hidden-layer-sizes/--hidden: invalid value"),
        (["--momentum", "2"], r"--momentum: invalid value: '2'.*\[0.0, 1.0\]"),
        (["--early-stopping", "maybe"], r"--early-stopping: invalid value"),
        (["--backend", "jax"], r"--backend: invalid choice: 'jax'"),
        (["--dtype", "float16"], r"--dtype: invalid choice"),
        (["--limit", "0"], r"--limit: must be a positive integer"),
        (["--limit", "abc"], r"--limit: must be a positive integer, got 'abc'"),
        (["--callbacks", "no_such_module:X"], r"cannot import callback"),
    ],
)
def test_invalid_values_fail_cleanly(capsys, options, pattern):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("anymlp train: error: ") and err.endswith(" (see anymlp train --help)\n")
    assert err.count("\n") == 1, "one line, not the usage"
    assert re.search(pattern, err), err


@pytest.mark.parametrize("argv", [["train", "--epochz", "2"], ["train", "extra"], ["fly"]])
def test_unknown_options_and_commands_fail_in_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "error:" in err, err


def test_callbacks_option_imports_and_instantiates(parser):
    params = _params(parser, "--callbacks", "anymlp.progress:ProgressPrinter")
    assert len(params["callbacks"]) == 1
    assert isinstance(params["callbacks"][0], ProgressPrinter)


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "train" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# anymlp train


def _read_accuracy(out):
    return float(re.search(r"^test accuracy (\d\.\d+) \((\d+) samples\)$", out, re.M).group(1))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_train_tiny_run_prints_and_saves(tmp_path, capsys):
    data, name, n_features = _train_data_options()
    model = tmp_path / "models" / "mlp.joblib"
    rc = main(["train", *data, "--limit", "1000", "--epochs", "2", "--hidden", "32",
               "--batch-size", "100", "--dtype", "float32", "--save", str(model)])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith(f"training MLPClassifier(hidden_layer_sizes=(32,), solver='adam') on {name}")
    assert re.search(rf"1000 x {n_features} float32, up to 2 epochs", out)
    epoch_lines = re.findall(r"^epoch (\d)/2  loss (\d+\.\d+)  (\d+\.\d+) s  ([\d,]+) samples/s$", out, re.M)
    assert [line[0] for line in epoch_lines] == ["1", "2"]
    assert float(epoch_lines[1][1]) < float(epoch_lines[0][1])  # it learns
    assert "stopped at max_iter=2" in out
    assert re.search(r"^trained in \d+\.\d s \(2 epochs, 1000 samples\), total \d+\.\d s$", out, re.M)
    assert re.search(r"^backend numpy on cpu$", out, re.M)
    assert f"model saved to {model}" in out

    loaded = joblib.load(model)
    assert loaded.n_iter_ == 2 and loaded.hidden_layer_sizes == (32,)
    assert loaded.callbacks is None  # the progress printer is not saved
    X = np.random.default_rng(0).random((5, n_features), dtype=np.float32)
    assert set(np.asarray(loaded.predict(X)).tolist()) <= set(range(10))
    accuracy = _read_accuracy(out)
    assert accuracy > (0.5 if name == "MNIST" else 0.2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_train_report_and_validation_lines(tmp_path, capsys):
    report = tmp_path / "report"
    rc = main(["train", "--dataset", "digits", "--epochs", "3", "--hidden", "16", "--batch-size", "50",
               "--lr", "0.01", "--early-stopping", "--report", str(report), "--dtype", "float64"])
    assert rc == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^epoch \d/3  loss \d+\.\d+  val \d\.\d{4}  ", out, re.M)) == 3
    assert f"report written to {report / 'report.md'}" in out
    pngs = ["learning_curves.png", "first_layer_weights.png", "confusion_matrix.png"]
    markdown = (report / "report.md").read_text()
    for name in pngs:
        data = (report / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({name})" in markdown
    assert f"| test accuracy | {_read_accuracy(out):.4f} |" in markdown
    assert "digits (8x8)" in markdown


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_train_quiet_prints_only_results(capsys):
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("test accuracy")
    assert not any(line.startswith(("epoch", "training")) for line in lines)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_train_falls_back_to_digits_without_mnist(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ANYMLP_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path))
    assert main(["train", "--no-download", "--epochs", "1", "--hidden", "8", "--limit", "300"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("notice: MNIST not found")
    assert "on digits (8x8): 300 x 64 float32" in out[1]


def test_train_mnist_required_but_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ANYMLP_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "home"))
    assert main(["train", "--data", str(tmp_path / "none.npz"), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "MNIST was not found" in err
    assert str(tmp_path / "none.npz") in err and str(tmp_path / "home") in err


@pytest.mark.parametrize("options, env, message", [
    (["--backend", "torch", "--device", "cuda:0"], {}, "device='cuda:0' was requested but torch sees 0 CUDA"),
    ([], {"ANYMLP_BACKEND": "bogus"}, "backend must be one of"),
    ([], {"ANYMLP_FIT_MEMORY_BUDGET": "2GiB"}, "ANYMLP_FIT_MEMORY_BUDGET='2GiB' is not a positive number"),
])
def test_train_refuses_bad_settings_in_one_line_before_loading_data(monkeypatch, capsys, options, env, message):
    import anymlp.cli as cli

    if "--backend" in options:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "_load_data", lambda *a: pytest.fail("data loaded before the settings were checked"))
    assert main(["train", "--dataset", "digits", *options]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("anymlp train: error: ") and message in captured.err
    assert "Traceback" not in captured.err and len(captured.err.splitlines()) == 1


def test_anymlp_debug_shows_the_traceback_of_a_mistake(monkeypatch, capsys):
    monkeypatch.setenv("ANYMLP_FIT_MEMORY_BUDGET", "2GiB")
    monkeypatch.setenv("ANYMLP_DEBUG", "0")
    assert main(["train", "--dataset", "digits"]) == 1
    monkeypatch.setenv("ANYMLP_DEBUG", "1")
    with pytest.raises(ValueError, match="ANYMLP_FIT_MEMORY_BUDGET='2GiB'"):
        main(["train", "--dataset", "digits"])


def test_train_refuses_data_beside_dataset_digits(monkeypatch, tmp_path, capsys):
    import anymlp.cli as cli

    monkeypatch.setattr(cli, "_load_data", lambda *a: pytest.fail("data loaded"))
    assert main(["train", "--dataset", "digits", "--data", str(tmp_path / "mnist.npz")]) == 1
    assert "--dataset digits asks for the bundled digits" in capsys.readouterr().err


@pytest.mark.parametrize("option, make, where, message", [
    ("--report", lambda p: p.write_text("a file"), "out", "there is a file there; give a folder path"),
    ("--save", lambda p: p.mkdir(), "out", "there is a folder there; give a file path"),
    ("--save", lambda p: None, "out/", "there is a folder there; give a file path"),
    ("--save", lambda p: p.write_text("a file"), "out/m.joblib", "out is a file, so no folder can be made there"),
    ("--report", lambda p: p.write_text("a file"), "out/report", "out is a file, so no folder can be made"),
])
def test_train_checks_where_results_go_before_training(monkeypatch, tmp_path, capsys, option, make, where,
                                                       message):
    import anymlp.cli as cli

    make(tmp_path / "out")
    monkeypatch.setattr(cli, "_load_data", lambda *a: pytest.fail("data loaded before the paths were checked"))
    assert main(["train", "--dataset", "digits", option, str(tmp_path) + "/" + where]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_failed_save_keeps_the_model_saved_there_before(monkeypatch, tmp_path, capsys):
    import joblib

    model = tmp_path / "m.joblib"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--save", str(model)]) == 0
    before = model.read_bytes()

    def failing_dump(value, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"xx")  # a partial file, as a dump that fails half-way leaves
        raise pickle.PicklingError("cannot pickle '_io.TextIOWrapper' object")

    monkeypatch.setattr(joblib, "dump", failing_dump)
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--save", str(model)]) == 1
    assert "could not save the model to" in capsys.readouterr().err
    assert model.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.joblib"]



@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_save_failing_on_disk_names_the_users_path(monkeypatch, tmp_path, capsys):
    import errno

    import joblib

    def full_disk(value, filename, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    monkeypatch.setattr(joblib, "dump", full_disk)
    model = tmp_path / "m.joblib"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--save", str(model)]) == 1
    err = capsys.readouterr().err
    assert err == f"anymlp train: error: could not save the model to {model}: No space left on device\n"

class LogToOpenFile:
    """A callback holding an open file, which does not pickle (imported by --callbacks)."""

    def __init__(self):
        self.log = open(os.devnull, "w")

    def on_epoch_end(self, estimator, record):
        print(record["epoch"], file=self.log)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_saved_model_leaves_out_the_callbacks(tmp_path, capsys):
    import joblib

    model = tmp_path / "m.joblib"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--save", str(model),
                 "--callbacks", f"{__name__}:LogToOpenFile"]) == 0
    assert joblib.load(model).callbacks is None


@pytest.mark.parametrize("text, expected", [("20 10", (20, 10)), ("(20, 10)", (20, 10)), ("20,10", (20, 10)),
                                            ("[20,  10]", (20, 10)), ("7", (7,))])
def test_hidden_sizes_are_separated_by_commas_or_spaces(text, expected):
    args = build_parser().parse_args(["train", "--hidden", text])
    assert estimator_params(args)["hidden_layer_sizes"] == expected


@pytest.mark.parametrize("options", [["--hidden", "True"], ["--hidden", "20,True"],
                                     ["--callbacks", "os.path:join"]])
def test_train_refuses_bools_as_sizes_and_functions_as_callbacks_at_parse_time(options, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "digits", *options])
    assert exit_.value.code == 2 and "anymlp train: error: argument" in capsys.readouterr().err


class StopAtEpoch2:
    """Ctrl-C in the second epoch (imported by --callbacks)."""

    def on_epoch_begin(self, estimator, *, epoch):
        if epoch == 2:
            raise KeyboardInterrupt


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_train_interrupted_keeps_the_model_and_exits_130(tmp_path, capsys):
    model = tmp_path / "m.joblib"
    rc = main(["train", "--dataset", "digits", "--epochs", "5", "--hidden", "8",
               "--callbacks", "tests.test_cli:StopAtEpoch2", "--save", str(model)])
    assert rc == 130
    out = capsys.readouterr().out
    assert "interrupted: the model is the one of the last completed epoch" in out
    assert _read_accuracy(out) > 0 and joblib.load(model).n_iter_ == 1


def test_train_interrupted_before_training_exits_130_without_a_traceback(monkeypatch, capsys):
    import anymlp.cli as cli

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_data", interrupted)
    assert main(["train", "--dataset", "digits"]) == 130
    assert capsys.readouterr().err == "anymlp train: interrupted\n"


def test_train_missing_mnist_points_at_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ANYMLP_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "home"))
    assert main(["train", "--dataset", "mnist", "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "or pass --data FILE." in err and "path=" not in err


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_quiet_fallback_to_digits_says_so_on_stderr(tmp_path, monkeypatch, capsys):
    """The results on stdout stay the only lines there; the accuracy is not MNIST's, and stderr says so."""
    monkeypatch.delenv("ANYMLP_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path))
    assert main(["train", "--no-download", "--epochs", "1", "--hidden", "8", "--limit", "300", "-q"]) == 0
    captured = capsys.readouterr()
    assert not any(line.startswith("notice") for line in captured.out.splitlines())
    assert captured.err.startswith("notice: MNIST not found")


class StopInEpoch1:
    """Ctrl-C in the first epoch (imported by --callbacks)."""

    def on_epoch_begin(self, estimator, *, epoch):
        raise KeyboardInterrupt


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_interrupted_before_any_epoch_saves_nothing(tmp_path, capsys, solver):
    """The model would be its initial weights: the file already there is kept."""
    model = tmp_path / "m.joblib"
    model.write_bytes(b"a good model")
    rc = main(["train", "--dataset", "digits", "--epochs", "3", "--hidden", "8", "--solver", solver,
               "--callbacks", "tests.test_cli:StopInEpoch1", "--save", str(model), "--report", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 130 and "interrupted before the first epoch completed: nothing evaluated or saved" in out
    assert "test accuracy" not in out and model.read_bytes() == b"a good model" and not (tmp_path / "r").exists()


def test_ctrl_c_while_scikit_learn_loads_exits_130_without_a_traceback():
    """`python -m anymlp train` interrupted in its first second or two, while scikit-learn
    loads: that happens inside the CLI's own code (``import anymlp`` leaves it for later)."""
    code = ("import runpy, sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'sklearn.base':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "sys.argv = ['anymlp', 'train']\n"
            "runpy.run_module('anymlp', run_name='__main__', alter_sys=True)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 130 and run.stderr == "anymlp: interrupted\n", run.stderr[-2000:]


# ---------------------------------------------------------------------------
# anymlp info


def test_info_text(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ["numpy", "cupy", "torch", "array_api_strict", "scipy", "scikit-learn",
                 "array-api-compat"]:
        assert re.search(rf"^  {name} +\S", out, re.M), name
    assert re.search(rf"^  numpy +{re.escape(np.__version__)}$", out, re.M)
    assert "GPU" in out


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["namespaces"]["numpy"] == np.__version__
    assert isinstance(info["gpus"], list)
    assert info["libraries"]["scikit-learn"]


def test_info_survives_broken_gpu_libraries(monkeypatch, capsys):
    # import cupy / import torch raise ImportError, as when missing or broken
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["info"]) == 0
    assert "none usable" in capsys.readouterr().out


def test_python_dash_m_and_lazy_imports():
    code = (
        "import sys, anymlp.cli, anymlp.datasets, anymlp.plotting, anymlp.progress;"
        "heavy = [m for m in ('torch', 'cupy', 'matplotlib', 'tqdm') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "anymlp", "info"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "array namespaces" in done.stdout


# ---------------------------------------------------------------------------
# anymlp.progress


RECORD = {"epoch": 3, "loss": 0.1234567, "validation_score": 0.9, "seconds": 1.5,
          "samples_per_second": 40000.0}


def test_format_epoch():
    assert format_epoch(RECORD, 12) == "epoch  3/12  loss 0.123457  val 0.9000  1.50 s  40,000 samples/s"
    assert format_epoch({**RECORD, "validation_score": None}) == "epoch 3  loss 0.123457  1.50 s  40,000 samples/s"
    # L-BFGS iterations have no meaningful throughput
    assert format_epoch({**RECORD, "samples_per_second": float("nan")}).endswith("val 0.9000  1.50 s")


def _drive(printer, epochs=2, batches=3):
    printer.on_fit_begin(None, max_epochs=epochs, n_batches=batches)
    for epoch in range(1, epochs + 1):
        printer.on_epoch_begin(None, epoch=epoch)
        for batch in range(1, batches + 1):
            printer.on_batch_end(None, batch=batch, n_batches=batches)
        printer.on_epoch_end(None, {**RECORD, "epoch": epoch})
    printer.on_fit_end(None)


def test_progress_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    _drive(printer)
    assert stream.getvalue().splitlines() == [
        format_epoch({**RECORD, "epoch": 1}, 2), format_epoch({**RECORD, "epoch": 2}, 2)]
    assert [r["epoch"] for r in printer.records] == [1, 2]


def test_progress_bar_when_asked():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    _drive(ProgressPrinter(stream, bar=True))
    text = stream.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text
    assert "3/3" in text and "loss=0.12346, val=0.9000" in text



def test_an_interrupted_epochs_bar_stops_where_its_batches_did():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    printer = ProgressPrinter(stream, bar=True)
    printer.on_fit_begin(None, max_epochs=3, n_batches=10)
    printer.on_epoch_begin(None, epoch=1)
    for batch in range(1, 5):
        printer.on_batch_end(None, batch=batch, n_batches=10)
    printer.on_fit_end(None)  # Ctrl-C in batch 5
    last = stream.getvalue().replace("\r", "\n").splitlines()[-1]
    assert "4/10" in last and "interrupted" in last and "10/10" not in last


def test_an_lbfgs_iterations_bar_is_full():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=2, random_state=0,
                          callbacks=[ProgressPrinter(stream, bar=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: two iterations
        model.fit(X[:100], y[:100])
    assert "epoch 2/2" in stream.getvalue() and "1/1" in stream.getvalue() and "interrupted" not in stream.getvalue()


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_epoch_records_hold_python_floats_for_a_float32_regressor(solver):
    """loss_ is NumPy float32 there, as scikit-learn's; a record stays JSON-ready."""
    from anymlp import MLPRegressor

    rng = np.random.RandomState(0)
    printer = ProgressPrinter(io.StringIO())
    model = MLPRegressor(hidden_layer_sizes=(3,), solver=solver, max_iter=2, random_state=0, callbacks=[printer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: two epochs
        model.fit(rng.rand(40, 3).astype(np.float32), rng.rand(40).astype(np.float32))
    assert type(model.loss_) is np.float32
    assert all(type(r["loss"]) is float for r in printer.records)
    json.dumps(printer.records)


@pytest.mark.parametrize("columns", [0, 80])
def test_a_terminal_without_a_width_gets_plain_lines(columns):
    """A pseudo-terminal reporting 0 columns (``script`` without a size) would get blank bars."""
    pytest.importorskip("tqdm")
    pty, fcntl, termios, struct = (pytest.importorskip(m) for m in ("pty", "fcntl", "termios", "struct"))
    main_fd, side_fd = pty.openpty()
    fcntl.ioctl(side_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with os.fdopen(side_fd, "w") as terminal:
        printer = ProgressPrinter(terminal)
        printer.on_fit_begin(None, max_epochs=1, n_batches=3)
        assert (printer._tqdm is not None) == (columns > 0)
        printer.on_fit_end(None)
    os.close(main_fd)

def test_progress_printer_pickles_without_its_stream():
    printer = ProgressPrinter(io.StringIO())
    _drive(printer, epochs=1)
    clone = pickle.loads(pickle.dumps(printer))
    assert clone.stream is None and len(clone.records) == 1


def test_train_interrupted_exits_130_whatever_the_warning_filters(tmp_path, capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as PYTHONWARNINGS=ignore would
        rc = main(["train", "--dataset", "digits", "--epochs", "5", "--hidden", "8",
                   "--callbacks", "tests.test_cli:StopAtEpoch2"])
    assert rc == 130 and "interrupted:" in capsys.readouterr().out


@pytest.mark.parametrize("options", [[], ["--verbose"]])
def test_a_reader_that_leaves_stops_the_printing_not_the_run(tmp_path, options):
    """`anymlp train --save m.joblib | head -1`: training, saving and the report go on; the
    exit status says the pipe closed (141). scikit-learn's verbose lines too."""
    model = tmp_path / "m.joblib"
    run = subprocess.Popen([sys.executable, "-m", "anymlp", "train", "--dataset", "digits", "--epochs", "30",
                            "--hidden", "8", "--save", str(model), *options],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.stdout.readline().startswith(b"training MLPClassifier")
    run.stdout.close()  # as head does after its line
    assert run.wait(timeout=120) == 141
    assert b"Traceback" not in run.stderr.read()
    assert joblib.load(model).n_iter_ == 30


class PrefixedPrinter(ProgressPrinter):
    def __init__(self, stream=None, prefix=">", every=2):
        super().__init__(stream)
        self.prefix = prefix
        self._every = every  # a subclass's own setting, named as private


def test_a_cloned_progress_printer_prints_to_the_same_stream():
    """scikit-learn's clone (in every search and cross-validation) deep-copies the callbacks;
    only a pickle drops the stream. A subclass stays itself, with its settings."""
    from sklearn.base import clone

    stream = io.StringIO()
    model = clone(MLPClassifier((4,), max_iter=2, callbacks=[PrefixedPrinter(stream, prefix="#")]))
    printer = model.callbacks[0]
    assert type(printer) is PrefixedPrinter and printer.stream is stream and printer.prefix == "#"
    assert printer._every == 2
    loaded = pickle.loads(pickle.dumps(model)).callbacks[0]
    assert type(loaded) is PrefixedPrinter and loaded.stream is None and (loaded.prefix, loaded._every) == ("#", 2)


def test_the_cli_stream_passes_on_what_tqdm_reads(tmp_path):
    """encoding (Unicode bars) and fileno (the terminal's width) of the real stream."""
    from anymlp.cli import _ReaderMayLeave

    with open(tmp_path / "out.txt", "w", encoding="utf-8") as f:
        wrapped = _ReaderMayLeave(f)
        assert wrapped.encoding == "utf-8" and wrapped.fileno() == f.fileno()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_save_compresses_by_extension_and_writes_through_a_symlink(tmp_path):
    import gzip

    compressed = tmp_path / "m.joblib.gz"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q",
                 "--save", str(compressed)]) == 0
    with gzip.open(compressed) as f:
        f.read(1)  # a gzip file, as joblib writes for .gz
    target, link = tmp_path / "v1.joblib", tmp_path / "latest.joblib"
    target.write_text("old")
    link.symlink_to(target.name)
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--save", str(link)]) == 0
    assert link.is_symlink() and joblib.load(target).n_iter_ == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.joblib", "m.joblib.gz", "v1.joblib"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_limit_below_the_default_batch_size_does_not_warn_about_a_setting_the_user_never_made():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--limit", "100"]) == 0
    assert not [w for w in caught if "batch_size" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--limit", "100",
                     "--early-stopping"]) == 0  # early stopping holds back a share of the 100 rows
    assert not [w for w in caught if "batch_size" in str(w.message)]
    with pytest.warns(UserWarning, match="batch_size"):  # the user's own setting: scikit-learn's warning
        main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "-q", "--limit", "100",
              "--batch-size", "500"])
