"""Models the user wrote: `path/to/file.py:Name` and `package.module:Name`. Resolving one builds it and runs a forward
pass, so a broken model fails in one line naming the file (and line, or layer) before any run directory exists. The
run directory keeps the exact bytes run (model_source.py); rebuilding from that copy runs it, so needs `trust_code`."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MnistliteError
from .registry import ModelEntry, SourceCode, collecting

# The copy of a user model's file that its run directory keeps (engine/rundir.py lists it with the others).
MODEL_SOURCE = "model_source.py"

CHECK_INPUT = (2, 1, 28, 28)
CLASSES = 10


@dataclass(frozen=True)
class ModelRef:
    target: str  # "path/to/file.py" or "package.module"
    attr: str

    @property
    def is_file(self) -> bool:
        return self.target.endswith(".py")

    def __str__(self) -> str:
        return f"{self.target}:{self.attr}"


def parse_ref(text: str) -> ModelRef | None:
    """`file.py:Name` or `pkg.mod:Name` -> ModelRef; anything else (a registered name) -> None."""
    target, sep, attr = text.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        return None  # e.g. a search trial's `family:{json}` name
    is_module = all(p.isidentifier() for p in target.split("."))
    return ModelRef(target, attr) if target.endswith(".py") or is_module else None


def canonical_path(path: str | Path, base: str | Path | None = None) -> str:
    """A file path as config.json records it: relative to the working directory when under it."""
    p = Path(os.path.abspath(Path(base or ".") / path))  # an absolute `path` ignores `base`
    try:
        return p.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return p.as_posix()


def rebase(text: str, base: Path) -> str:
    """A reference written relative to `base` (an experiment file's folder), made canonical."""
    ref = parse_ref(text)
    if ref is None or not ref.is_file:
        return text
    return f"{canonical_path(ref.target, base)}:{ref.attr}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_MODULES: dict[str, types.ModuleType] = {}  # sha256 of a file's bytes -> its module


@contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    """As `python file.py` does: the file's folder is importable while it is imported."""
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(folder)


def _where_raised(e: BaseException, filename: str) -> str:
    """`file:line` of the deepest frame of `filename` in e's traceback, else the file."""
    frames = reversed(traceback.extract_tb(e.__traceback__))
    line = next((fr.lineno for fr in frames if os.path.abspath(fr.filename) == os.path.abspath(filename)), None)
    return f"{filename}:{line}" if line else filename


def _exc(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return f"{type(e).__name__}{': ' + msg if msg else ''}"


def exec_file(data: bytes, filename: str) -> types.ModuleType:
    """Run a model file's bytes as a fresh module (cached by content); one-line errors."""
    digest = sha256(data)
    if digest in _MODULES:
        return _MODULES[digest]
    try:
        code = compile(data, filename, "exec")
    except SyntaxError as e:
        raise MnistliteError(f"{filename}:{e.lineno}: syntax error: {e.msg}") from None
    except ValueError as e:  # e.g. null bytes
        raise MnistliteError(f"{filename}: not a Python file ({e})") from None
    # A name of its own per content: two versions of one file never share a module.
    mod = types.ModuleType(f"mnistlite_user_{digest[:16]}")
    mod.__file__ = filename
    sys.modules[mod.__name__] = mod  # dataclasses and pickling look classes up here
    try:
        with collecting(factory_of) as found, _on_sys_path(os.path.dirname(os.path.abspath(filename))):
            exec(code, mod.__dict__)
    except BaseException as e:
        sys.modules.pop(mod.__name__, None)
        if isinstance(e, (MnistliteError, KeyboardInterrupt)):
            raise
        raise MnistliteError(f"{_where_raised(e, filename)}: importing it raised {_exc(e)}") from None
    mod.__dict__["__mnistlite_entries__"] = found
    _MODULES[digest] = mod
    return mod


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise MnistliteError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise MnistliteError(f"{path}: is a directory, not a model file") from None
    except OSError as e:
        raise MnistliteError(f"{path}: cannot read ({e.strerror or e})") from None


def _import_module(name: str) -> tuple[types.ModuleType, bytes | None, str]:
    """`package.module` -> (module, its source bytes or None, a label for messages)."""
    try:
        with _on_sys_path(os.getcwd()):  # as `python -m` does
            mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise MnistliteError(f"{name}: no such module ({e}); give a file path (models.py:Net) or install it") from None
    except Exception as e:  # noqa: BLE001 -- importing user code raises anything
        file = getattr(sys.modules.get(name), "__file__", None) or name
        raise MnistliteError(f"{_where_raised(e, file)}: importing {name} raised {_exc(e)}") from None
    file = getattr(mod, "__file__", None)
    data = Path(file).read_bytes() if file and file.endswith(".py") and os.path.isfile(file) else None
    return mod, data, file or name


def factory_of(obj: Any, label: str) -> Callable[..., nn.Module]:
    """Check that `obj` builds models with no arguments; return a factory taking `dropout`."""
    if isinstance(obj, nn.Module):
        raise MnistliteError(f"{label} is an nn.Module instance; name its class, or a function that builds a fresh one")
    if inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            raise MnistliteError(f"{label} is a class but not an nn.Module subclass")
    elif not callable(obj):
        raise MnistliteError(f"{label} is {type(obj).__name__!r}, not an nn.Module class or a function returning one")
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        params = []
    named = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    need = [p.name for p in params if p.kind in named and p.default is p.empty and p.name != "self"]
    if need:
        raise MnistliteError(
            f"{label} needs argument(s) {', '.join(need)}; mnistlite builds a model with none: give them "
            "defaults, or name a function that builds it"
        )
    takes_dropout = any(p.name == "dropout" or p.kind is p.VAR_KEYWORD for p in params)

    def build(dropout: float | None = None) -> nn.Module:
        model = obj(dropout=dropout) if takes_dropout and dropout is not None else obj()
        if dropout is not None and not takes_dropout:
            for m in model.modules():  # "--dropout: the rate of every dropout layer"
                if isinstance(m, nn.Dropout):
                    m.p = float(dropout)
        return model

    return build


def check_model(build: Callable[[], nn.Module], label: str, filename: str | None = None) -> nn.Module:
    """Build the model and run a (2, 1, 28, 28) batch through it; one-line errors, global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = build()
        except MnistliteError:
            raise
        except Exception as e:  # noqa: BLE001
            where = _where_raised(e, filename) if filename else label
            raise MnistliteError(f"{label}: building the model raised {_exc(e)} (at {where})") from None
        if not isinstance(model, nn.Module):
            raise MnistliteError(f"{label} returned {type(model).__name__!r}, not an nn.Module")
        stack: list[str] = []
        names = {m: n for n, m in model.named_modules()}

        def pre(mod: nn.Module, _inp: Any) -> None:
            stack.append(names.get(mod) or type(mod).__name__)

        def post(_mod: nn.Module, _inp: Any, _out: Any) -> None:
            stack.pop()

        handles = []
        for m in list(model.modules())[1:]:  # all but the model itself
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                out = model(torch.zeros(CHECK_INPUT))
        except Exception as e:  # noqa: BLE001
            layer = f" in layer {stack[-1]} ({type(dict(model.named_modules())[stack[-1]]).__name__})" if stack else ""
            raise MnistliteError(f"{label}: a forward pass on a {CHECK_INPUT} batch failed{layer}: {_exc(e)}") from None
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (CHECK_INPUT[0], CLASSES):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise MnistliteError(
            f"{label}: a {CHECK_INPUT} batch gave {shape}; mnistlite needs logits of shape (N, {CLASSES})"
        )
    return model


def _module_classes(module: types.ModuleType) -> list[str]:
    """Names of the nn.Module classes `module` itself defines."""
    classes = {n: v for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, nn.Module)}
    return [n for n, v in classes.items() if v.__module__ == module.__name__]


_ENTRIES: dict[tuple[str, str, str], ModelEntry] = {}


def _entry(ref: ModelRef, module: types.ModuleType, data: bytes | None, filename: str) -> ModelEntry:
    key = (str(ref), filename, sha256(data) if data is not None else str(id(module)))
    if key in _ENTRIES:
        return _ENTRIES[key]
    found: dict[str, ModelEntry] = module.__dict__.get("__mnistlite_entries__", {})
    label = f"{filename}:{ref.attr}"
    code = SourceCode(filename, sha256(data), data) if data is not None else None
    if ref.attr in found:  # a model the file registered with @register_model
        e = found[ref.attr]
        tags = tuple(dict.fromkeys(("user",) + e.tags))
        source = e.source or f"user file {ref.target}"
        entry = replace(e, name=str(ref), source=source, tags=tags, recipe=dict(e.recipe), code=code)
    else:
        if not hasattr(module, ref.attr):
            have = sorted(set(found) | set(_module_classes(module)))
            hint = f" (it defines: {', '.join(have)})" if have else ""
            raise MnistliteError(f"{filename}: no model named {ref.attr!r}{hint}")
        obj = getattr(module, ref.attr)
        doc = (inspect.getdoc(obj) or "").strip().split("\n")[0]
        entry = ModelEntry(str(ref), factory_of(obj, label), f"user file {ref.target}", ("user",), {}, None, doc, code)
    check_model(entry.factory, label, filename)
    _ENTRIES[key] = entry
    return entry


def entry_from_bytes(ref: ModelRef, data: bytes, filename: str) -> ModelEntry:
    return _entry(ref, exec_file(data, filename), data, filename)


def resolve(ref: ModelRef) -> ModelEntry:
    """The entry a reference names now (the file as it is on disk)."""
    if ref.is_file:
        return entry_from_bytes(ref, read_file(ref.target), ref.target)
    module, data, label = _import_module(ref.target)
    return _entry(ref, module, data, label)


def file_entries(path: str) -> list[ModelEntry]:
    """What `mnistlite models --from FILE` lists: the file's registered models, else its nn.Module classes."""
    target = canonical_path(path)
    module = exec_file(read_file(path), path)
    names = list(module.__dict__.get("__mnistlite_entries__", {})) or _module_classes(module)
    return [resolve(ModelRef(target, n)) for n in names]


def named_models(files: Any, path: Path) -> dict[str, str]:
    """An experiment or tune file's `models = [files]` (relative to `path`) -> {registered name: reference}."""
    if not isinstance(files, list) or not all(isinstance(v, str) for v in files):
        raise MnistliteError(f'{path}: models must be a list of model files, e.g. ["my_models.py"]')
    named: dict[str, str] = {}
    for f in files:
        file = canonical_path(f, path.parent)
        for name in exec_file(read_file(file), file).__dict__.get("__mnistlite_entries__", {}):
            if name in named:
                raise MnistliteError(f"{path}: model {name!r} is registered by two of its model files")
            named[name] = f"{file}:{name}"
    return named


def entry_from_run(run_dir: Path, saved: dict[str, Any], *, trust_code: bool) -> ModelEntry | None:
    """The model a run directory was trained on, rebuilt from its own copy; None for a registered one."""
    name = str(saved.get("model", ""))
    ref = parse_ref(name)
    if ref is None:
        return None
    copy = Path(run_dir) / MODEL_SOURCE
    digest = saved.get("model_sha256")
    if not digest or not copy.is_file():
        raise MnistliteError(
            f"{run_dir}: trained on {name}, whose source was not kept (a model defined in a notebook or "
            "script); it can only be rebuilt where it was defined"
        )
    data = read_file(str(copy))
    if sha256(data) != digest:
        raise MnistliteError(
            f"{copy}: SHA-256 {sha256(data)[:12]}... does not match config.json's {str(digest)[:12]}...; the copy "
            "was changed after training, so this run cannot be rebuilt as trained"
        )
    if not trust_code:
        raise MnistliteError(
            f"{run_dir} was trained on user code ({name}, kept as {MODEL_SOURCE}); rebuilding it runs that code: "
            "pass --trust-code (trust_code=True in Python) if you trust it"
        )
    return entry_from_bytes(ref, data, str(copy))
