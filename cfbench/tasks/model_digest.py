"""``model_digest``: the identity of a fitted classifier, from its state rather than its file.

A skops file is a zip whose entries carry their write time and are named after Python object
ids, so the SHA-256 of its bytes differs for every save of the same model: two machines fitting
the same task's classifier would never agree, and ``cfbench leaderboard --add`` (which requires
the board's classifier) would refuse every submission from another machine.  The digest here
walks the fitted objects in a fixed order instead — parameters, fitted arrays (dtype, shape,
bytes), tree nodes (through the objects' own ``__reduce__``) — so the same fit gives the same
digest on any machine and in any process, fitted or loaded from the cache, and any change to a
split, a weight or a hyper-parameter changes it.  A random generator's state left behind by
training (an MLP's ``_random_state``) is not part of the model and is left out: it does not
change a prediction, and skops does not keep it.  Nothing is pickled or unpickled.
"""

from __future__ import annotations

import hashlib
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

#: bump when the walk changes, so digests of two definitions never compare equal by accident
VERSION = b"cfbench-model-digest-1"


def model_digest(model: Any) -> str:
    """SHA-256 (hex) of ``model``'s fitted state, walked in a fixed order (see the module)."""
    h = hashlib.sha256(VERSION)
    _feed(h, model, set())
    return h.hexdigest()


def _feed(h: Any, obj: Any, active: set[int]) -> None:
    """Add ``obj`` to the hash ``h``, tagged by type so that ``1``, ``1.0`` and ``"1"`` differ."""
    if obj is None or isinstance(obj, (bool, int, float, complex, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        h.update(f"bytes:{len(data)}:".encode() + data)
    elif isinstance(obj, np.generic):
        _feed(h, np.asarray(obj), active)
    elif isinstance(obj, np.ndarray):
        _feed_array(h, obj, active)
    elif type(obj).__module__.startswith("xgboost") and hasattr(obj, "save_model"):
        h.update(b"xgboost-json;")  # its own model format: the same for a fitted and a loaded model
        _feed(h, xgboost_json(obj), active)
    elif isinstance(obj, (np.random.RandomState, np.random.Generator)):
        h.update(b"rng;")  # the generator left by training: not the model (skops does not keep it)
    elif isinstance(obj, type) or _is_function(obj):
        h.update(f"ref:{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))};".encode())
    else:
        if id(obj) in active:  # a cycle: name it, do not follow it
            h.update(f"cycle:{type(obj).__qualname__};".encode())
            return
        active.add(id(obj))
        try:
            _feed_container(h, obj, active)
        finally:
            active.discard(id(obj))


def xgboost_json(estimator: Any) -> bytes:
    """A fitted XGBoost model in XGBoost's JSON model format (its scikit-learn settings too)."""
    with tempfile.TemporaryDirectory() as tmp:  # save_model writes to a path only
        target = Path(tmp) / "model.json"
        estimator.save_model(target)
        return target.read_bytes()


def _is_function(obj: Any) -> bool:
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                            types.ModuleType))


def _feed_array(h: Any, a: np.ndarray, active: set[int]) -> None:
    h.update(f"ndarray:{a.dtype.str}:{a.shape};".encode())
    if a.dtype.hasobject:
        for item in a.ravel(order="C"):
            _feed(h, item, active)
    elif a.dtype.names:  # a structured array (tree nodes): field by field, padding ignored
        for name in a.dtype.names:
            h.update(f"field:{name};".encode())
            _feed_array(h, np.ascontiguousarray(a[name]), active)
    else:
        h.update(np.ascontiguousarray(a).tobytes())


def _feed_container(h: Any, obj: Any, active: set[int]) -> None:
    if isinstance(obj, dict):
        h.update(f"dict:{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key, active)
            _feed(h, obj[key], active)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}:{len(obj)};".encode())
        for item in obj:
            _feed(h, item, active)
    elif isinstance(obj, (set, frozenset)):
        h.update(f"set:{len(obj)};".encode())
        for item in sorted(model_digest(x) for x in obj):
            h.update(item.encode())
    else:
        h.update(f"object:{type(obj).__module__}.{type(obj).__qualname__};".encode())
        _feed(h, _state(obj), active)


def _state(obj: Any) -> Any:
    """What defines ``obj``: its ``__getstate__`` (scikit-learn estimators), else the arguments
    and state of its ``__reduce_ex__`` (trees); an object that cannot be reduced (a lock in a
    user's pipeline) counts by its type alone, so a digest is always computed."""
    getstate = getattr(obj, "__getstate__", None)
    if getstate is not None and hasattr(obj, "__dict__"):
        state = getstate()
        if state is not None:
            return state
    try:
        reduced = obj.__reduce_ex__(4)
    except (TypeError, ValueError):  # not reducible (a lock, a file): named by its type only
        return f"opaque:{type(obj).__module__}.{type(obj).__qualname__}"
    if isinstance(reduced, str):  # a module-level singleton, named
        return reduced
    args = reduced[1] if len(reduced) > 1 else ()
    state = reduced[2] if len(reduced) > 2 else None
    return (args, state)
