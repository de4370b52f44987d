"""The quantized training loop.

``train(config)`` runs ``config.steps`` jit-compiled steps of

    g ← ∇_θ CE(model_θ(x), y)   (fake-quantized forward, straight-through backward; θ float32 masters)
    θ ← AdamW(clip(g) [+ extra_transform])   (:mod:`zipfrmt.nn.optim`)

and returns its history (:mod:`zipfrmt.nn.history`) as an ``xarray.Dataset`` over ``step = 0 … steps``
(step 0 is the initialisation: evaluation and probes only).

**Determinism.** Data offsets and stochastic-rounding keys are folded from ``(seed, step)``; parameters,
optimiser state and the history so far are checkpointed together (:mod:`zipfrmt.nn.checkpoint`), so a run
resumed from its last checkpoint produces a history identical, bit for bit on one CPU, to an uninterrupted run.

**Divergence** stops the run cleanly: a non-finite loss or gradient norm, or a training loss above
``blowup_factor · ln V``. The history up to that step is kept, with ``status = "diverged"``, ``reason`` and
``stopped_at``. **Collapse** is judged on the finished run (:mod:`zipfrmt.nn.collapse`) and recorded, not
stopped on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from flax import nnx
from jaxtyping import Array, Float, Int

import zipfrmt
from zipfrmt.nn import checkpoint, probes
from zipfrmt.nn.collapse import COLLAPSE_CRITERION, judge
from zipfrmt.nn.config import TrainConfig, config_to_json, validate
from zipfrmt.nn.data import (
    TokenData,
    batch_at,
    cross_entropy,
    eval_windows,
    load_tokens,
    perplexity,
    unigram_cross_entropy,
)
from zipfrmt.nn.evaluate import MAX_EVAL_WINDOWS, eval_step
from zipfrmt.nn.history import FIELDS, HISTORY_FILE, new_history, to_dataset, write_history
from zipfrmt.nn.layers import Ctx
from zipfrmt.nn.mechanisms import quantize_params, site_specs
from zipfrmt.nn.model import build_model
from zipfrmt.nn.optim import lr_schedule, make_optimizer
from zipfrmt.nn.rules import spec_of

__all__ = ["train", "train_step", "trained_model"]

#: The config of the run a folder holds.
CONFIG_FILE = "config.json"

Params = dict[str, Any]


@partial(jax.jit, static_argnums=(0, 1, 2))
def train_step(
    graphdef: Any,
    config: TrainConfig,
    extra: optax.GradientTransformation | None,
    template: nnx.State,
    rest: nnx.State,
    params: Params,
    opt_state: optax.OptState,
    step: Int[Array, ""],
    tokens_N: Int[Array, " N"],
    seed: Int[Array, ""] | int | None = None,
) -> tuple[Params, optax.OptState, Float[Array, ""], Float[Array, ""]]:
    """One AdamW step on the batch of ``step``; returns (params, optimiser state, loss, gradient norm): with
    ``wgrad`` rules the gradients are quantized before the optimiser (and the norm is theirs), with ``master``
    rules the updated weights are put back on their grids (:mod:`zipfrmt.nn.mechanisms`).

    Compiled once per (model structure, config, extra transform): a resumed run reuses the compilation. The
    training ``seed`` may be passed as a traced value (``config.seed`` otherwise), so runs that differ only in
    their seed share one compilation (``train`` passes the config with ``seed=0``).
    """
    seed = config.seed if seed is None else seed
    batch_BxLp1 = batch_at(tokens_N, seed, step, config.batch_size, config.context)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 2), step)

    def loss_fn(p: Params) -> Float[Array, ""]:
        logits_BxLxV, _ = checkpoint.merge(graphdef, template, rest, p)(batch_BxLp1[:, :-1], Ctx(key))
        return cross_entropy(logits_BxLxV, batch_BxLp1[:, 1:])

    loss, grads = jax.value_and_grad(loss_fn)(params)
    if wgrad := site_specs(config.quant, config.model, "wgrad"):  # quantized weight gradients
        k_wgrad = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 5), step)  # streams of their own
        grads = quantize_params(grads, wgrad, k_wgrad, config.control)
    updates, opt_state = make_optimizer(config, extra).update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if master := site_specs(config.quant, config.model, "master"):  # no float32 copy: back on the grid
        k_master = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 6), step)
        params = quantize_params(params, master, k_master, config.control)
    return params, opt_state, loss, optax.tree.norm(grads)


def _holds_run(out: Path) -> bool:
    """Whether a folder holds (part of) a run: a history or a checkpoint, not just the config of a run that never
    got as far as its first checkpoint."""
    return (out / HISTORY_FILE).exists() or _has_checkpoint(out)


def _has_checkpoint(out: Path) -> bool:
    """Whether a run folder holds a checkpoint (a step folder under ``checkpoints``)."""
    ckpt = out / "checkpoints"
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def _differences(saved: str, config: TrainConfig) -> list[str]:
    """The (dotted) fields in which the config saved in a run folder differs from ``config``."""
    try:
        old = json.loads(saved)
    except ValueError:
        return ["config.json (unreadable)"]
    if not isinstance(old, dict):
        return ["config.json (not a config)"]
    new = json.loads(config_to_json(config))
    diff = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [f"{k}.{j}" for j in sorted(set(a) | set(b)) if a.get(j) != b.get(j)]
        elif a != b:
            diff.append(k)
    return diff


def _check_same_run(out: Path, config: TrainConfig) -> None:
    """Raises if the run folder ``out`` holds a run of another config (by its ``config.json``)."""
    saved = out / CONFIG_FILE
    if not saved.exists() or not _holds_run(out):
        return
    text = saved.read_text(errors="replace")
    if text != config_to_json(config):
        diff = _differences(text, config)
        raise ValueError(f"out_dir (--out): '{out}' holds a run of a different config (it differs in "
                         f"{', '.join(diff) or 'its JSON text'}); use another directory")


def _open_out_dir(out_dir: str | Path | None, config: TrainConfig) -> Path | None:
    """Creates the run folder, or checks that the one found holds a run of this very config (a folder that holds
    no history and no checkpoint yet, e.g. of a run stopped before its first checkpoint, is taken over), and
    writes the config into it. Errors name ``out_dir`` (``--out`` on the command line)."""
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir (--out): expected a folder for the run, got the existing file '{out}'")
    try:
        out.mkdir(parents=True, exist_ok=True)
        _check_same_run(out, config)
        tmp = out / (CONFIG_FILE + ".tmp")  # atomically: an interruption never leaves half a config
        tmp.write_text(config_to_json(config))
        tmp.replace(out / CONFIG_FILE)
    except OSError as exc:
        raise OSError(f"out_dir (--out): cannot create or write the run folder '{out}' "
                      f"({exc.strerror or exc})") from exc
    return out


def _divergence(loss: float, gnorm: float, s: int, config: TrainConfig) -> str | None:
    """Why the run diverged at step ``s``, or None."""
    if not (math.isfinite(loss) and math.isfinite(gnorm)):
        return f"non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'} at step {s}"
    limit = config.blowup_factor * math.log(config.model.vocab_size)
    if loss > limit:
        return f"loss blow-up at step {s}: {loss:.4g} > blowup_factor·ln V = {limit:.4g}"
    return None


class _Recorder:
    """Held-out evaluation and spectral probes of the current parameters, written into the history."""

    def __init__(self, config: TrainConfig, data: TokenData, parts: tuple[Any, Any, Any], hist: dict[str, Any]):
        self.config, self.parts, self.hist = config, parts, hist
        chunk = config.eval_batches * config.batch_size
        windows = eval_windows(data.eval, config.context, config.eval_windows or MAX_EVAL_WINDOWS)
        if config.eval_windows is None and windows.shape[0] > chunk:  # whole chunks: one compiled shape
            windows = eval_windows(data.eval, config.context, windows.shape[0] // chunk * chunk)
        self.unigram_loss = unigram_cross_entropy(data.train, windows, config.model.vocab_size)
        self.chunks = [jnp.asarray(windows[i : i + chunk]) for i in range(0, windows.shape[0], chunk)]
        self.n_windows = int(windows.shape[0])
        self.embed_spec = spec_of(config.quant, "embed")
        self.master_spec = spec_of(config.quant, "master/embed")
        self.grad_head_spec = spec_of(config.quant, "grad/head")

    def due(self, s: int) -> bool:
        c = self.config
        return s % c.eval_every == 0 or s % c.probe_every == 0 or s == c.steps

    def __call__(self, s: int, params: Params) -> None:
        losses, counts = [], []
        for chunk in self.chunks:
            loss, hidden_chunk, E = eval_step(*self.parts, params, chunk)
            losses.append(float(loss))
            counts.append(chunk.shape[0])
            if len(losses) == 1:
                hidden = hidden_chunk
        loss = float(np.average(losses, weights=counts))
        self.hist["eval_loss"][s], self.hist["perplexity"][s] = loss, perplexity(loss)
        if self.probe_due(s):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.config.seed), 3), s)
            k_view, k_push = jax.random.split(key)
            found = probes.probe_all(E, self.embed_spec, hidden, k_view, master_spec=self.master_spec,
                                     control=self.config.control)
            for k, v in found.items():
                self.hist[k][s] = v
            if self.grad_head_spec is not None:
                self.hist["grad_pushdown_kept"][s] = float(pushdown_step(
                    *self.parts, params, self.chunks[0], self.grad_head_spec, self.config.control, k_push))

    def probe_due(self, s: int) -> bool:
        return s % self.config.probe_every == 0 or s == self.config.steps

    def missing(self, s: int) -> bool:
        """Whether step ``s`` should have been recorded and was not (an interruption inside the recording)."""
        return self.due(s) and (not np.isfinite(self.hist["eval_loss"][s])
                                or self.probe_due(s) and not np.isfinite(self.hist["emb_stable_rank"][s]))


@partial(jax.jit, static_argnums=(0, 5, 6))
def pushdown_step(
    graphdef: Any, template: nnx.State, rest: nnx.State, params: Params, windows_BxLp1: Int[Array, "B Lp1"],
    spec: Any, control: str, key: Any,
) -> Float[Array, ""]:
    """:func:`zipfrmt.nn.probes.pushdown_kept` of the model's logit cotangent on held-out windows."""
    k_model, k_grad = jax.random.split(key)
    logits_BxLxV, _ = checkpoint.merge(graphdef, template, rest, params)(windows_BxLp1[:, :-1], Ctx(k_model))
    V = logits_BxLxV.shape[-1]
    return probes.pushdown_kept(logits_BxLxV.reshape(-1, V), windows_BxLp1[:, 1:].reshape(-1), spec, k_grad,
                                control)


def train(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    extra_transform: optax.GradientTransformation | None = None,
    reference: xr.Dataset | None = None,
    stop_after: int | None = None,
) -> xr.Dataset:
    """Trains the model a config describes and returns its history (see the module docstring).

    Args:
      config: a :class:`~zipfrmt.nn.config.TrainConfig` (validated before anything runs).
      out_dir: if given, Orbax checkpoints go to ``out_dir/checkpoints`` every ``checkpoint_every`` steps and
        the history to ``out_dir/history.nc``; a run started on a directory holding a checkpoint of the same
        config resumes from it.
      progress: show a progress bar (loss and the embedding's stable rank).
      extra_transform: an optax transformation chained after gradient clipping and before AdamW.
      reference: a full-precision history of the same setting, for the rank part of the collapse criterion.
      stop_after: stop (as if interrupted) after this many steps, leaving the checkpoints for a resume.

    A ``KeyboardInterrupt`` (Ctrl-C) during training saves a checkpoint of the last completed step and the
    history so far in ``out_dir`` (status ``interrupted``) and is raised again with a message saying so.

    Returns:
      The history ``xarray.Dataset`` (dim ``step``); attrs: ``config`` (JSON), ``zipfrmt_version``, ``status``
      (``ok``/``diverged``/``collapsed``/``interrupted``; a run with no quantized site is never ``collapsed``:
      stuck at the unigram level it stays ``ok`` and its ``reason`` says it is undertrained), ``reason``,
      ``stopped_at`` (−1 if it ran to the end), ``unigram_entropy`` (of the training stream), ``unigram_loss``
      (the training unigram's cross-entropy on the evaluation windows), ``eval_windows``, ``collapse_criterion``,
      ``data``, ``n_params``, ``tokens_per_step``.
    """
    config = validate(config)
    out = _open_out_dir(out_dir, config)  # before the corpus, which may take long to build
    data = load_tokens(config)
    graphdef, template, rest, params = checkpoint.split(build_model(config))
    if master := site_specs(config.quant, config.model, "master"):  # the initial weights on their grids
        params = quantize_params(params, master, jax.random.fold_in(jax.random.key(config.seed), 9), config.control)
    opt_state = make_optimizer(config, extra_transform).init(params)
    hist, start = new_history(config.steps), 0
    mgr = None if out is None else checkpoint.manager(out)
    if mgr is not None and (found := checkpoint.latest(mgr, {"params": params, "opt_state": opt_state,
                                                              "history": hist})) is not None:
        start, tree = found
        params, opt_state = tree["params"], tree["opt_state"]
        hist = {k: np.asarray(tree["history"][k], np.float64) for k in FIELDS}
    record = _Recorder(config, data, (graphdef, template, rest), hist)
    schedule, tokens = lr_schedule(config), jnp.asarray(data.train)
    static, seed = dataclasses.replace(config, seed=0), jnp.asarray(config.seed, jnp.int32)
    status, reason, stopped_at = "ok", "", -1
    bar = _progress_bar(config, start) if progress else None
    done, saved, user_stop = start, start, False  # the last completed and the last checkpointed step
    try:
        if start == 0 or record.missing(start):  # also a step whose recording an interruption cut short
            record(start, params)
        for t in range(start, config.steps):
            s = t + 1
            new = train_step(graphdef, static, extra_transform, template, rest, params, opt_state,
                             jnp.asarray(t, jnp.int32), tokens, seed)
            params, opt_state, loss, gnorm = new
            done = s
            loss, gnorm = float(loss), float(gnorm)
            hist["loss"][s], hist["grad_norm"][s], hist["lr"][s] = loss, gnorm, float(schedule(t))
            if (why := _divergence(loss, gnorm, s, config)) is not None:
                status, reason, stopped_at = "diverged", why, s
                break
            if record.due(s):
                record(s, params)
            if bar is not None:
                bar.update()
                bar.set_postfix_str(f"loss {loss:.3f} sr {_last_finite(hist['emb_stable_rank'][: s + 1]):.2f}")
            interrupt = stop_after is not None and stop_after <= s < config.steps
            if mgr is not None and (s % config.checkpoint_every == 0 or s == config.steps or interrupt):
                checkpoint.save(mgr, s, {"params": params, "opt_state": opt_state, "history": hist})
                saved = s
            if interrupt:
                status, reason, stopped_at = "interrupted", f"stopped after {s} steps (stop_after)", s
                break
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, which `zipfrmt train` turns into it): keep what is done
        user_stop = True
        status, reason, stopped_at = "interrupted", f"interrupted by the user after {done} steps", done
        if mgr is not None and done > saved:
            checkpoint.save(mgr, done, {"params": params, "opt_state": opt_state, "history": hist})
    finally:
        if bar is not None:
            bar.close()
        if mgr is not None:
            mgr.close()
    ds = to_dataset(hist, stopped_at + 1 if stopped_at >= 0 else config.steps + 1, {
        "config": config_to_json(config), "zipfrmt_version": zipfrmt.__version__, "status": status,
        "reason": reason, "stopped_at": int(stopped_at), "unigram_entropy": float(data.unigram_entropy),
        "unigram_loss": record.unigram_loss, "eval_windows": record.n_windows,
        "collapse_criterion": COLLAPSE_CRITERION, "data": data.description,
        "n_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "tokens_per_step": int(config.batch_size * config.context)})
    if status == "ok":  # a run with no quantized site is not "collapsed", at most undertrained (the reason)
        ds.attrs["status"], ds.attrs["reason"] = judge(ds, reference, config)
    if out is not None:
        write_history(ds, out)
    if user_stop:
        raise KeyboardInterrupt(f"training interrupted after {done} steps; "
                                + (f"checkpoint and history saved in '{out}': run the same command to resume"
                                   if out is not None else "nothing saved (no out_dir)"))
    return ds


def _progress_bar(config: TrainConfig, start: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=config.steps, initial=start, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True)


def _last_finite(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else math.nan


def trained_model(
    config: TrainConfig, out_dir: str | Path, *, extra_transform: optax.GradientTransformation | None = None
) -> nnx.Module:
    """The model of a finished run, restored from the last checkpoint in ``out_dir``.

    ``config`` must be the run's config exactly — ``steps`` included, since the steps are part of the run (its
    schedule, its checkpoints and its history): a folder whose ``config.json`` differs raises a ValueError
    naming the fields that differ. Nothing is created on disk: a missing folder or a folder without a
    checkpoint raises FileNotFoundError.

    ``extra_transform``: the one the run was trained with (its state is part of the checkpoint, so the
    restore template needs it; e.g. :func:`zipfrmt.mitigate.s2d.s2d`).
    """
    config = validate(config)
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"out_dir: expected the folder of a run, got '{out}', which "
                                + ("is a file" if out.exists() else "does not exist"))
    saved = out / CONFIG_FILE
    if saved.exists() and (text := saved.read_text(errors="replace")) != config_to_json(config):
        raise ValueError(f"out_dir: '{out}' holds a run of a different config (it differs in "
                         f"{', '.join(_differences(text, config)) or 'its JSON text'}); pass the config the run "
                         "was trained with")
    if not _has_checkpoint(out):
        raise FileNotFoundError(f"out_dir: no checkpoint in '{out}'")
    graphdef, template, rest, params = checkpoint.split(build_model(config))
    opt_state = make_optimizer(config, extra_transform).init(params)
    mgr = checkpoint.manager(out)
    try:
        found = checkpoint.latest(mgr, {"params": params, "opt_state": opt_state,
                                        "history": new_history(config.steps)})
    finally:
        mgr.close()
    if found is None:
        raise FileNotFoundError(f"out_dir: no checkpoint in '{out}'")
    return checkpoint.merge(graphdef, template, rest, found[1]["params"])
