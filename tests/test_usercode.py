"""The user's own models: every reference form, run directories that keep the code,
--trust-code, the notebook API, `mnistlite init`, and every bad-input case."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from mnistlite.cli import main
from mnistlite.engine import resume, train
from mnistlite.engine import rundir as rd
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for, get_entry

NET = """
import torch.nn as nn


class Net(nn.Module):
    \"\"\"A small BN-ReLU net.\"\"\"

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.05),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def make_net():
    return Net()
"""

REGISTERED = """
import torch.nn as nn
from mnistlite import register_model


@register_model("tiny", recipe={"lr": 0.05, "epochs": 2}, tags=("mine",), description="A tiny net")
def tiny():
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def net_file(tmp_path) -> Path:
    return write(tmp_path / "my_models.py", NET)


def tiny_data(n: int = 256):
    from mnistlite.bench import synthetic_data

    return synthetic_data(n)


# --- reference forms --------------------------------------------------------------------
def test_file_class_and_function_references(net_file):
    for name in ("Net", "make_net"):
        e = get_entry(f"{net_file}:{name}")
        assert e.code is not None and len(e.code.sha256) == 64 and "user" in e.tags
        assert e.build()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert get_entry(f"{net_file}:Net").description == "A small BN-ReLU net."


def test_package_module_reference(tmp_path, monkeypatch):
    write(tmp_path / "pkg_user_models" / "__init__.py", "")
    write(tmp_path / "pkg_user_models" / "nets.py", NET)
    monkeypatch.chdir(tmp_path)
    e = get_entry("pkg_user_models.nets:Net")
    assert e.code is not None and e.build()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    cfg = config_for("pkg_user_models.nets:Net")
    assert cfg.model_sha256 == e.code.sha256


@pytest.mark.slow
def test_registered_decorator_file_gives_recipe_and_lists(tmp_path, capsys):
    f = write(tmp_path / "reg.py", REGISTERED)
    cfg = config_for(f"{f}:tiny")
    assert (cfg.lr, cfg.epochs) == (0.05, 2)
    assert "tiny" not in __import__("mnistlite").list_models()  # named through its file only
    rc, out, _ = cli(capsys, "models", "--from", str(f), "--from", str(write(tmp_path / "n.py", NET)))
    assert rc == 0 and f"{f}:tiny" in out and "mnistlite_flagship" in out and "n.py:Net" in out
    rc, out, _ = cli(capsys, "summary", f"{f}:tiny")
    assert rc == 0 and "Budget:" in out and "fits the 8,000-parameter budget" in out


def test_experiment_and_tune_files_name_user_models(tmp_path):
    from mnistlite.reports.experiment import load_experiment
    from mnistlite.tuning_file import load_tuning

    write(tmp_path / "proj" / "reg.py", REGISTERED)
    write(tmp_path / "proj" / "nets" / "n.py", NET)
    exp = write(
        tmp_path / "proj" / "exp.toml",
        """
        title = "t"
        models = ["reg.py"]
        [[steps]]
        name = "a"
        model = "tiny"
        target = ["x"]
        [[steps]]
        name = "b"
        model = "nets/n.py:Net"
        target = ["y"]
    """,
    )
    e = load_experiment(exp)
    assert [s.model for s in e.steps] == [f"{tmp_path}/proj/reg.py:tiny", f"{tmp_path}/proj/nets/n.py:Net"]
    assert e.config(e.steps[0], 1).lr == 0.05  # the file's registered recipe
    tune = write(
        tmp_path / "proj" / "tune.toml",
        """
        budget = 8000
        models = ["reg.py"]
        [[candidates]]
        name = "a"
        model = "tiny"
        [[candidates]]
        name = "b"
        model = "nets/n.py:Net"
    """,
    )
    t = load_tuning(tune)
    assert [c.params for c in t.candidates] == [186, 1442]
    write(
        tmp_path / "proj" / "bad.toml",
        'title = "t"\nmodels = ["nope.py"]\n[[steps]]\nname="a"\nmodel="x"\ntarget=["x"]\n',
    )
    with pytest.raises(MnistliteError, match="nope.py: model file not found"):
        load_experiment(tmp_path / "proj" / "bad.toml")


# --- run directories keep the code ------------------------------------------------------
@pytest.mark.slow
def test_run_keeps_copy_then_resume_and_export_need_trust(net_file, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = config_for(f"{net_file}:Net", epochs=2, batch_size=64, threads=1)
    res = train(cfg, run_dir=out, data=tiny_data(), progress=False, quiet=True)
    saved = rd.read_json(out / rd.CONFIG)
    assert (out / rd.MODEL_SOURCE).read_bytes() == net_file.read_bytes()
    assert saved["model_sha256"] == get_entry(f"{net_file}:Net").code.sha256
    assert "Fast path: 2 of 2 BatchNorm layers fused" in (out / rd.LOG).read_text()
    assert res.architecture["BatchNorm layers"] == "2"
    assert rd.read_json(out / rd.RESULT)["architecture"]["conv widths"] == "8-16"

    # Editing the user's file changes nothing for the run: it rebuilds from its copy.
    net_file.write_text(
        NET.replace("nn.Linear(16, 10)", "nn.Linear(16, 10), nn.ReLU()").replace(
            "self.head = nn.Linear(16, 10), nn.ReLU()", "self.head = nn.Linear(16, 99)"
        )
    )
    from mnistlite.deploy.predict import load_run

    with pytest.raises(MnistliteError, match="--trust-code"):
        load_run(out)
    assert load_run(out, trust_code=True).model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)

    # Resume: drop the result to look interrupted after epoch 2 of 3, then continue.
    ck = torch.load(out / rd.CHECKPOINT, weights_only=True)
    ck["config"]["epochs"] = 3
    torch.save(ck, out / rd.CHECKPOINT)
    (out / rd.CONFIG).write_text(json.dumps({**saved, "epochs": 3}))
    (out / rd.RESULT).unlink()
    with pytest.raises(MnistliteError, match="--trust-code"):
        resume(out, data=tiny_data(), progress=False, quiet=True)
    done = resume(out, data=tiny_data(), progress=False, quiet=True, trust_code=True)
    assert done.summary["epochs_run"] == 3

    # A tampered copy is refused even with --trust-code, by the CLI too.
    (out / rd.MODEL_SOURCE).write_text(NET + "\nprint('hello')\n")
    rc, _, err = cli(capsys, "export", str(out), "--trust-code")
    assert rc == 2 and "does not match config.json" in err and len(err.strip().splitlines()) == 1


def test_changed_file_is_a_different_run_but_a_moved_file_is_not(net_file, tmp_path):
    from mnistlite.config import changed_fields

    a = config_for(f"{net_file}:Net")
    moved = write(tmp_path / "elsewhere" / "my_models.py", NET)
    assert changed_fields(a.to_dict(), config_for(f"{moved}:Net")) == []
    write(moved, NET.replace("Dropout(0.05)", "Dropout(0.1)"))
    assert changed_fields(a.to_dict(), config_for(f"{moved}:Net")) == ["model", "model_sha256"]


@pytest.mark.slow
def test_over_budget_model_trains_with_the_verdict(tmp_path):
    f = write(
        tmp_path / "big.py",
        """
        import torch.nn as nn
        class Big(nn.Module):
            def __init__(self):
                super().__init__()
                self.c = nn.Conv2d(1, 64, 3)
                self.h = nn.Linear(64 * 26 * 26 // 64, 10)
                self.fc = nn.Linear(64, 200)
                self.out = nn.Linear(200, 10)
            def forward(self, x):
                return self.out(self.fc(self.c(x).mean((2, 3))))
    """,
    )
    out = tmp_path / "run"
    train(
        config_for(f"{f}:Big", epochs=1, threads=1),
        run_dir=out,
        data=tiny_data(),
        progress=False,
        quiet=True,
    )
    assert "over the 8,000-parameter budget by" in (out / rd.LOG).read_text()
    assert "Budget: over the 8,000-parameter budget" in (out / rd.LAYER_TABLE).read_text()


# --- bad input: one line, exit 2, no run directory --------------------------------------
BAD = {
    "syntax": ("def f(:\n", "Net", r"bad\.py:1: syntax error"),
    "import-raises": (
        "import torch.nn as nn\n\nx = 1 / 0\n",
        "Net",
        r"bad\.py:3: importing it raised ZeroDivisionError",
    ),
    "no-such-name": (NET, "Nett", r"no model named 'Nett' \(it defines: Net\)"),
    "not-a-model": ("X = 3\n", "X", r"bad\.py:X is 'int', not an nn.Module class"),
    "plain-class": ("class X:\n    pass\n", "X", r"is a class but not an nn.Module subclass"),
    "needs-args": (
        "import torch.nn as nn\nclass N(nn.Module):\n    def __init__(self, width):\n        super().__init__()\n",
        "N",
        r"needs argument\(s\) width",
    ),
    "build-raises": (
        "import torch.nn as nn\ndef make():\n    raise ValueError('nope')\n",
        "make",
        r"building the model raised ValueError: nope \(at .*bad\.py:3\)",
    ),
    "forward-fails": (
        "import torch.nn as nn\ndef make():\n    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(5, 10))\n",
        "make",
        r"forward pass on a \(2, 1, 28, 28\) batch failed in layer 1 \(Linear\)",
    ),
    "wrong-shape": (
        "import torch.nn as nn\ndef make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))\n",
        "make",
        r"gave \(2, 7\); mnistlite needs logits of shape \(N, 10\)",
    ),
    "returns-non-module": ("def make():\n    return 3\n", "make", r"returned 'int', not an nn.Module"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_user_model_is_one_line_and_no_run_dir(case, tmp_path, capsys):
    source, name, pattern = BAD[case]
    f = write(tmp_path / "bad.py", source)
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "--model", f"{f}:{name}", "--out", str(out), "--epochs", "1")
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    import re

    assert re.search(pattern, err), err
    assert not out.exists()


def test_missing_file_is_one_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "summary", f"{tmp_path}/nope.py:Net")
    assert rc == 2 and "model file not found" in err and len(err.strip().splitlines()) == 1


# --- the notebook API -------------------------------------------------------------------
class LocalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 8, 3, bias=False)
        self.b = nn.BatchNorm2d(8)
        self.h = nn.Linear(8, 10)

    def forward(self, x):
        return self.h(torch.relu(self.b(self.c(x))).mean((2, 3)))


def test_notebook_api_train_summary_and_plot(tmp_path):
    from mnistlite import summary
    from mnistlite import train as nb_train

    prof = summary(LocalNet())
    assert prof.params == 8 * 9 + 16 + 90 and "Budget:" in str(prof)
    r = nb_train(LocalNet, epochs=2, batch_size=64, threads=1, data=tiny_data(), progress=False, quiet=True)
    assert r.config.model.endswith("test_usercode.py:LocalNet") and r.config.model_sha256
    assert len(r.metrics) == 2 and r.model is not None
    assert r.plot(tmp_path / "c.png") is not None and (tmp_path / "c.png").stat().st_size > 0
    inst = LocalNet()
    before = inst.h.weight.detach().clone()
    nb_train(inst, epochs=1, threads=1, data=tiny_data(), progress=False, quiet=True)
    assert not torch.equal(before, inst.h.weight)  # an instance trains in place
    with pytest.raises(MnistliteError, match="unknown argument"):
        nb_train(LocalNet, epoch=3)


@pytest.mark.slow
def test_notebook_api_seeds(tmp_path, data_root):
    from mnistlite import seeds

    s = seeds(LocalNet, 2, epochs=1, limit_train=500, threads=1, data_dir=str(data_root), out=tmp_path / "s")
    assert s.summary["n"] == 2 and s.summary["seeds"] == [1, 2]
    assert (tmp_path / "s" / "seed2" / rd.MODEL_SOURCE).is_file() and "seed" in str(s)
    with pytest.raises(MnistliteError, match="not an instance"):
        seeds(LocalNet(), 2)


@pytest.mark.slow
def test_example_notebook_runs_headless(data_root, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("MNISTLITE_DATA", str(data_root))
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "examples" / "my_first_model.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "Budget:" in text and "final test" in text


@pytest.mark.slow
# --- init, end to end ----------------------------------------------------------------------
def test_init_then_experiment_dry_run_writes_the_report(tmp_path, capsys, data_root, monkeypatch):
    proj = tmp_path / "proj"
    rc, out, _ = cli(capsys, "init", str(proj))
    assert rc == 0 and (proj / "models" / "model_1.py").is_file() and (proj / "experiment.toml").is_file()
    assert "mnistlite experiment experiment.toml" in (proj / "README.md").read_text()
    rc, _, err = cli(capsys, "init", str(proj))
    assert rc == 2 and "already exists" in err
    monkeypatch.chdir(proj)
    rc, _, err = cli(
        capsys,
        "experiment",
        "experiment.toml",
        "--dry-run",
        "--no-progress",
        "--seeds",
        "1",
        "--data-dir",
        str(data_root),
    )
    assert rc == 0, err
    report = (proj / "runs" / "experiments" / "experiment-dry-run" / "report.md").read_text()
    for heading in ("### Target", "### Results", "### Analysis"):
        assert report.count(heading) == 2
    assert "too few to judge" in report and "overfits" not in report
    # Named from outside the folder, the same files are the same runs: nothing retrains.
    monkeypatch.chdir(tmp_path)
    rc, out, _ = cli(
        capsys,
        "experiment",
        str(proj / "experiment.toml"),
        "--dry-run",
        "--plan",
        "--seeds",
        "1",
        "--out",
        str(proj / "runs" / "experiments" / "experiment-dry-run"),
        "--data-dir",
        str(data_root),
    )
    assert rc == 0 and out.count("done, skipped") == 2 and "new" not in out


# --- pretrained weights -------------------------------------------------------------------
@pytest.mark.slow
def test_pretrained_flagship_classifies_real_digits(mnist_small):
    from mnistlite import create_model
    from mnistlite.models.pretrained import catalogue

    model = create_model("mnistlite_flagship", pretrained=True)
    x, y = mnist_small.test.images[:1000], mnist_small.test.labels[:1000]
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item() * 100
    assert acc > 98.5
    assert catalogue()["mnistlite_flagship"]["final_test_acc"] > 99.0


@pytest.mark.slow
def test_predict_and_export_by_name_need_no_training(tmp_path, capsys, data_root):
    pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image

    img = np.zeros((28, 28), np.uint8)
    img[5:23, 13:16] = 255
    Image.fromarray(img).save(tmp_path / "one.png")
    rc, out, err = cli(capsys, "predict", "mnistlite_flagship", str(tmp_path / "one.png"))
    assert rc == 0 and out.split(":")[1].split()[0] == "1", err
    rc, out, err = cli(
        capsys, "export", "mnistlite_frontier", "--out", str(tmp_path / "f.onnx"), "--data-dir", str(data_root)
    )
    assert rc == 0 and (tmp_path / "f.onnx").is_file(), err


# --- the plain-torch fast path ----------------------------------------------------------------
def _same_training_step(plain: nn.Module, fast: nn.Module, x: torch.Tensor) -> None:
    """One training forward and backward of each: the same outputs and parameter gradients."""
    outs = []
    for m in (plain, fast):
        m.to(memory_format=torch.channels_last).train()
        y = m(x)
        y.square().sum().backward()
        outs.append((y.detach(), {k: p.grad for k, p in m.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-4, rtol=1e-4)
    # Gradients summed over a batch reach tens here; the two paths add them in different orders
    # (and torch's order moves with the thread count), so the tolerance scales with each tensor.
    for k, g in outs[0][1].items():
        torch.testing.assert_close(g, outs[1][1][k], atol=1e-3 * max(1.0, g.abs().max().item()), rtol=1e-3)


def test_fast_path_matches_plain_torch_gradients():
    import copy

    from mnistlite.fast.apply import accelerate

    class Mixed(nn.Module):  # one run in a Sequential, one written out in forward
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.c = nn.Conv2d(8, 16, 3, bias=False)
            self.b = nn.BatchNorm2d(16)
            self.h = nn.Linear(16, 10)

        def forward(self, x):
            return self.h(torch.nn.functional.relu(self.b(self.c(self.block(x)))).mean((2, 3)))

    torch.manual_seed(0)
    plain = Mixed()
    fast, note = accelerate(copy.deepcopy(plain))
    assert note.startswith("Fast path: 2 of 2") and "1 in nn.Sequential" in note and "1 in forward" in note
    assert set(fast.state_dict()) == set(plain.state_dict())
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    _same_training_step(plain, fast, x)


def test_fast_path_traces_a_module_inside_a_sequential():
    """A block whose forward holds BN -> ReLU, used inside an nn.Sequential (the tracer stops at
    the Sequential), is traced on its own: the tiny zoo's shared residual units are built so."""
    import copy

    from mnistlite.fast.apply import accelerate

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.bns = nn.ModuleList(nn.BatchNorm2d(8) for _ in range(2))

        def forward(self, x):
            for bn in self.bns:
                x = x + torch.relu(bn(self.c(x)))
            return x

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), Residual())
    fast, note = accelerate(copy.deepcopy(plain))
    assert (
        note == "Fast path: 3 of 3 BatchNorm layers fused with their ReLU, 1 in nn.Sequential, 2 in forward (torch.fx)"
    )
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    _same_training_step(plain, fast, x)


def test_fast_path_routes_pools_in_forward_to_the_compiled_pool(monkeypatch):
    """A pool written in forward (a module or F.max_pool2d(x, 2)) takes the compiled pool as a
    Sequential's does; other pools stay torch's; outputs and gradients as plain torch's."""
    import copy

    from mnistlite.fast import kernels
    from mnistlite.fast.apply import accelerate

    class Pools(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.b, self.p = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8), nn.MaxPool2d(2)
            self.h = nn.Linear(8, 10)

        def forward(self, x):
            x = self.p(torch.relu(self.b(self.c(x))))  # 26 -> 13
            x = torch.nn.functional.max_pool2d(x, 2)  # 13 -> 6
            x = torch.nn.functional.max_pool2d(x, 3)  # not 2x2: torch's
            return self.h(x.mean((2, 3)))

    torch.manual_seed(0)
    plain = Pools()
    fast, note = accelerate(copy.deepcopy(plain))
    assert "1 in forward" in note and "2 max-pools in forward on the compiled pool" in note, note
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    _same_training_step(plain, fast, x)
    if kernels.available():  # the loops, not torch's pool, ran in training
        from mnistlite.fast import unit

        calls = []
        apply = unit._MaxPool2.apply
        monkeypatch.setattr(unit._MaxPool2, "apply", lambda t: calls.append(t.shape) or apply(t))
        fast(x)
        assert [tuple(c[2:]) for c in calls] == [(26, 26), (13, 13)]


def test_untraceable_forward_falls_back_and_says_so():
    from mnistlite.fast.apply import accelerate

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.b, self.h = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 10)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent: fx cannot trace it
                x = -x
            return self.h(torch.relu(self.b(self.c(x))).mean((2, 3)))

    m = Branchy()
    out, note = accelerate(m)
    assert out is m and "1 run as plain torch: its forward could not be traced" in note
    assert out(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_serve_by_name_needs_no_training():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mnistlite.deploy.serve import create_app
    from mnistlite.models.pretrained import catalogue

    info = TestClient(create_app("mnistlite_flagship")).get("/api/info").json()
    shipped = catalogue()["mnistlite_flagship"]["final_test_acc"]  # the shipped run's own figure
    assert info["model"] == "mnistlite_flagship" and info["params"] == 7766 and info["test_acc"] == shipped
