"""The one on-disk form of a trained model: ``MODEL.safetensors`` + ``MODEL.json``.

* ``MODEL.safetensors``: the tensors (no pickle; optionally float16 to keep shipped files
  small, restored to float32 on reading);
* ``MODEL.json``: a ``"format"`` tag, the architecture the caller needs to rebuild the
  network, and the metadata (training data, validation figures, retrain command).

``MODEL`` may be given with or without either suffix. Every model kind (kinematics flow,
image GAN, particle VAE, LAGAN, jet CNN) reads and writes through :func:`write_model`
and :func:`read_model`, so a missing, foreign or damaged file gives the same clear
:class:`~hepfastsim.errors.ModelError` naming the file whatever the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepfastsim.errors import ModelError

if TYPE_CHECKING:  # torch is imported on first use, so importing a model module stays cheap
    import torch

SUFFIXES = (".safetensors", ".json")


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``(MODEL.safetensors, MODEL.json)`` for ``MODEL``, ``MODEL.safetensors`` or ``MODEL.json``."""
    p = Path(path)
    base = p.with_suffix("") if p.suffix in SUFFIXES else p
    return Path(f"{base}.safetensors"), Path(f"{base}.json")


def json_default(obj: Any) -> Any:
    """JSON form of numpy scalars and arrays, paths and 0-d tensors found in metadata."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if type(obj).__name__ == "Tensor" and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _read_json(meta: Path, what: str) -> Any:
    try:
        return json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read {what} metadata {str(meta)!r}: {err}") from err


def write_model(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    document: Mapping[str, Any],
    *,
    half: bool | Callable[[str, torch.Tensor], bool] = False,
) -> tuple[Path, Path]:
    """Write the tensors and the JSON ``document`` (which must hold ``"format"``).

    ``half``: store float32 tensors as float16 (``True``: all of them; a callable
    ``(name, tensor) -> bool``: those it selects). Returns the two paths written.
    """
    fmt = document.get("format")
    if not isinstance(fmt, str):
        raise ModelError(f"model document for {str(path)!r} has no 'format' tag")
    import torch
    from safetensors.torch import save_file

    weights, meta = model_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        if t.dtype == torch.float32 and (half(name, t) if callable(half) else half):
            t = t.half()
        out[name] = t.contiguous().clone()
    save_file(out, str(weights), metadata={"format": fmt})
    meta.write_text(json.dumps(dict(document), indent=1, default=json_default) + "\n")
    return weights, meta


def read_model(path: str | Path, fmt: str, *, what: str, hint: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, document)`` of a model written by :func:`write_model` in format ``fmt``.

    Floating tensors come back as float32; integer tensors unchanged. ``what`` names the
    model kind in errors (``"kinematics model"``); ``hint`` is appended to the
    missing-file error (for example how to train one).
    """
    from safetensors.torch import load_file

    weights, meta = model_paths(path)
    for p in (weights, meta):
        if not p.is_file():
            raise ModelError(f"cannot load {what}: no file {str(p)!r}{hint}")
    document = _read_json(meta, what)
    if not isinstance(document, dict) or document.get("format") != fmt:
        got = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ModelError(f"{what} metadata {str(meta)!r}: expected format {fmt!r}, got {got!r}")
    try:
        raw = load_file(str(weights))
    except Exception as err:  # safetensors raises its own header/IO errors
        raise ModelError(f"cannot load {what} weights {str(weights)!r}: {type(err).__name__}: {err}") from err
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in raw.items()}
    return tensors, document


def load_state(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], path: str | Path, *, what: str) -> None:
    """``module.load_state_dict(tensors, strict=True)`` with a :class:`ModelError` naming the file."""
    try:
        module.load_state_dict(dict(tensors), strict=True)
    except (RuntimeError, KeyError) as err:
        weights, meta = model_paths(path)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(
            f"{what} weights {str(weights)!r} do not match the architecture in {str(meta)!r}: {first}"
        ) from err


def record_validation(path: str | Path, name: str, entry: Mapping[str, Any]) -> Path:
    """Store ``entry`` under ``validation[name]`` of an existing ``MODEL.json`` (any model
    kind) and return that path; :class:`ModelError` naming the file when there is none."""
    meta = model_paths(path)[1]
    if not meta.is_file():
        raise ModelError(f"no model metadata {str(meta)!r} to record the validation in")
    doc = _read_json(meta, "model")
    if not isinstance(doc, dict):
        raise ModelError(f"model metadata {str(meta)!r}: expected a JSON object, got {type(doc).__name__}")
    doc.setdefault("validation", {})[name] = dict(entry)
    meta.write_text(json.dumps(doc, indent=1, default=json_default) + "\n")
    return meta
