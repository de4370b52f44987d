"""Parameters as Orbax-friendly nested dicts, and the run's checkpoints.

A model is split into its graph definition, its trainable parameters (a nested dict with string keys, which
Orbax stores as is) and the rest of its state; :func:`merge` puts them back together. A checkpoint holds
``{"params", "opt_state", "history"}`` at one step; a run keeps the last two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from flax import nnx

__all__ = ["latest", "manager", "merge", "save", "split"]


def _str_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _str_keys(v) for k, v in tree.items()}
    return tree


def _int_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {(int(k) if k.isdigit() else k): _int_keys(v) for k, v in tree.items()}
    return tree


def split(model: nnx.Module) -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(graphdef, params state template, other state, params as a nested dict with string keys)``."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest, _str_keys(nnx.to_pure_dict(params))


def merge(graphdef: Any, template: Any, rest: Any, params: dict[str, Any]) -> nnx.Module:
    """The model with ``params`` (a nested dict as :func:`split` returns) in place of the template's values."""
    state = jax.tree.map(lambda x: x, template)
    nnx.replace_by_pure_dict(state, _int_keys(params))
    return nnx.merge(graphdef, state, rest)


def manager(out: Path) -> Any:
    """An Orbax checkpoint manager on ``out/checkpoints`` keeping the last two steps (synchronous writes)."""
    import orbax.checkpoint as ocp

    opts = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    # the handler named up front, so that a fresh manager can read a checkpoint's metadata before restoring it
    return ocp.CheckpointManager((Path(out) / "checkpoints").absolute(), options=opts,
                                 item_handlers=ocp.StandardCheckpointHandler())


def save(mgr: Any, step: int, tree: dict[str, Any]) -> None:
    """Writes ``tree`` as the checkpoint of ``step`` and waits until it is on disk."""
    import orbax.checkpoint as ocp

    mgr.save(step, args=ocp.args.StandardSave(tree))
    mgr.wait_until_finished()


def latest(mgr: Any, template: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """``(step, tree)`` of the newest checkpoint, restored with the shapes and dtypes of ``template``; None if
    there is none. The ``history`` dict may hold other fields than the template's (a checkpoint of a version that
    recorded other probes): the fields both have are restored, the template's others keep its values."""
    import orbax.checkpoint as ocp

    step = mgr.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    history = template.get("history")
    stored = mgr.item_metadata(step).tree.get("history") if isinstance(history, dict) else None
    if stored is None or set(stored) == set(history):
        return step, mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    # A checkpoint written by another version records other probes: restore the history it holds, keep the
    # fields it lacks as the template has them (all NaN: never measured) and drop those this version does not know.
    abstract["history"] = {k: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype) for k, m in stored.items()}
    tree = mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    tree["history"] = {k: tree["history"].get(k, v) for k, v in history.items()}
    return step, tree
