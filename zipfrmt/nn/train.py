"""The quantized training loop: AdamW, evaluation, spectral probes, divergence and collapse, Orbax checkpoints.

``train(config)`` runs ``config.steps`` jit-compiled steps of

    g ← ∇_θ CE(model_θ(x), y)   (fake-quantized forward, straight-through backward; θ float32 masters)
    θ ← AdamW(clip(g) [+ extra_transform])   (lr: linear warm-up to ``lr``, cosine decay to ``lr·min_lr_ratio``)

and returns its history as an ``xarray.Dataset`` over ``step = 0 … steps`` (step 0 is the initialisation:
evaluation and probes only). Per step: ``loss`` (training batch), ``lr``, ``grad_norm``; every ``eval_every``
steps: ``eval_loss`` and ``perplexity`` on fixed held-out windows; every ``probe_every`` steps: the
:mod:`zipfrmt.nn.probes` of the embedding (full precision and quantized view) and of the final hidden states.
Steps without a value hold NaN.

**Determinism.** Data offsets and stochastic-rounding keys are folded from ``(seed, step)``; parameters,
optimiser state and the history so far are checkpointed together, so a run resumed from its last checkpoint
produces a history identical, bit for bit on one CPU, to an uninterrupted run.

**Divergence** stops the run cleanly: a non-finite loss or gradient norm, or a training loss above
``blowup_factor · ln V``. The history up to that step is kept, with ``status = "diverged"``, ``reason`` and
``stopped_at``.

**Collapse** (recorded, the run is not stopped; ``status = "collapsed"``). A run has collapsed if either

1. its final held-out loss is within ``unigram_margin`` nats of the unigram entropy of the training stream
   (or above it): the model learned token frequencies and nothing of the context (not applied to i.i.d.
   ``zipf`` data, where the unigram entropy is the best achievable loss); or
2. given a full-precision ``reference`` history (same config at fp32), its final hidden-state effective rank
   or its final quantized-embedding effective rank is below ``collapse_fraction`` (0.5) of the reference's
   final full-precision value.

The criterion and its inputs are recorded in the history's attributes.
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

import zipfrmt
from zipfrmt.nn import probes
from zipfrmt.nn.config import QuantSpec, TrainConfig, config_to_json, validate
from zipfrmt.nn.data import batch_at, cross_entropy, eval_windows, load_tokens, perplexity
from zipfrmt.nn.layers import Ctx
from zipfrmt.nn.model import build_model, set_quant

__all__ = ["COLLAPSE_CRITERION", "collapse_verdict", "evaluate", "make_optimizer", "train"]

STEP_FIELDS = ("loss", "lr", "grad_norm")
EVAL_FIELDS = ("eval_loss", "perplexity")
FIELDS = STEP_FIELDS + EVAL_FIELDS + probes.EMBED_FIELDS + probes.HIDDEN_FIELDS

COLLAPSE_CRITERION = (
    "collapsed if the final held-out loss is within unigram_margin nats of the unigram entropy (or above), or, "
    "against a full-precision reference run, if the final hidden-state effective rank or the final quantized "
    "embedding effective rank falls below collapse_fraction of the reference's"
)

HISTORY_FILE = "history.nc"


# ---------------------------------------------------------------------------------------------------------
# Parameters as nested dicts with string keys (Orbax-friendly), and back to NNX state
# ---------------------------------------------------------------------------------------------------------


def _str_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _str_keys(v) for k, v in tree.items()}
    return tree


def _int_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {(int(k) if k.isdigit() else k): _int_keys(v) for k, v in tree.items()}
    return tree


def _split(model: nnx.Module) -> tuple[Any, Any, Any, dict]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest, _str_keys(nnx.to_pure_dict(params))


def _merge(graphdef: Any, template: Any, rest: Any, params: dict) -> nnx.Module:
    state = jax.tree.map(lambda x: x, template)
    nnx.replace_by_pure_dict(state, _int_keys(params))
    return nnx.merge(graphdef, state, rest)


# ---------------------------------------------------------------------------------------------------------
# Optimiser
# ---------------------------------------------------------------------------------------------------------


def lr_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up from 0 to ``lr`` over ``warmup`` steps, then cosine decay to ``lr·min_lr_ratio``."""
    return optax.warmup_cosine_decay_schedule(
        0.0, config.lr, config.warmup, max(config.steps, config.warmup + 1), config.lr * config.min_lr_ratio)


def make_optimizer(
    config: TrainConfig, extra_transform: optax.GradientTransformation | None = None
) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip) → [extra_transform] → AdamW(schedule)``.

    ``extra_transform`` sees the clipped loss gradient and the parameters (``update(g, state, params)``) and
    may add to it, e.g. a spectral penalty's gradient; AdamW then treats the sum as the gradient.
    """
    parts = [optax.clip_by_global_norm(config.grad_clip)]
    if extra_transform is not None:
        parts.append(extra_transform)
    parts.append(optax.adamw(lr_schedule(config), b1=config.b1, b2=config.b2, weight_decay=config.weight_decay))
    return optax.chain(*parts)


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------

_KEEP: Any = object()


def evaluate(
    model: nnx.Module,
    tokens: Any,
    config: TrainConfig,
    *,
    weight_quant: QuantSpec | None | Any = _KEEP,
    embed_quant: QuantSpec | None | Any = _KEEP,
    head_quant: QuantSpec | None | Any = _KEEP,
    act_quant: QuantSpec | None | Any = _KEEP,
    n_windows: int | None = None,
) -> dict[str, float]:
    """Held-out loss (nats per token) and perplexity ``exp(loss)`` of ``model`` on ``tokens``.

    ``tokens``: a 1-D held-out stream (cut into ``n_windows`` non-overlapping windows of ``context + 1``,
    default ``eval_batches · batch_size``) or a 2-D array of windows. Post-training quantization: any of
    ``weight_quant`` (linear layers), ``embed_quant``, ``head_quant``, ``act_quant`` replaces the model's own
    spec on a copy (None = full precision; omitted = as trained), e.g. W4A4 with
    ``weight_quant=QuantSpec(bits=4, granularity="row"), act_quant=QuantSpec(bits=4, granularity="row")``.
    Stochastic rounding uses a fixed key, so evaluation is deterministic.
    """
    validate(config)
    toks = np.asarray(tokens)
    if toks.ndim == 1:
        n = n_windows or config.eval_batches * config.batch_size
        if toks.size < config.context + 1:
            raise ValueError(f"tokens: expected at least context + 1 = {config.context + 1} tokens, got {toks.size}")
        windows = eval_windows(toks.astype(np.int32), config.context, n)
    elif toks.ndim == 2:
        windows = toks.astype(np.int32)
    else:
        raise ValueError(f"tokens: expected a 1-D stream or 2-D windows, got shape {toks.shape}")
    if any(x is not _KEEP for x in (weight_quant, embed_quant, head_quant, act_quant)):
        kw = {k: v for k, v in dict(linear=weight_quant, embed=embed_quant, head=head_quant, act=act_quant).items()
              if v is not _KEEP}
        model = set_quant(nnx.clone(model), **kw)
    graphdef, template, rest, params = _split(model)
    chunk = config.eval_batches * config.batch_size  # the training loop's evaluation shape: shares its compilation
    losses, counts = [], []
    for i in range(0, windows.shape[0], chunk):
        w = jnp.asarray(windows[i : i + chunk])
        loss, _, _ = _eval_step(graphdef, template, rest, params, w)
        losses.append(float(loss))
        counts.append(w.shape[0])
    loss = float(np.average(losses, weights=counts))
    return {"loss": loss, "perplexity": perplexity(loss), "n_tokens": int(sum(counts) * config.context)}


# ---------------------------------------------------------------------------------------------------------
# Collapse
# ---------------------------------------------------------------------------------------------------------


def _last(ds: xr.Dataset, name: str) -> float:
    if name not in ds:
        return math.nan
    v = ds[name].values
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else math.nan


def collapse_verdict(
    history: xr.Dataset, reference: xr.Dataset | None = None, config: TrainConfig | None = None
) -> tuple[bool, str]:
    """Whether a finished run collapsed, and why (see the module docstring for the criterion)."""
    frac = config.collapse_fraction if config is not None else 0.5
    margin = config.unigram_margin if config is not None else 0.05
    h_uni = float(history.attrs.get("unigram_entropy", math.nan))
    final = _last(history, "eval_loss")
    reasons = []
    # On i.i.d. data the unigram entropy is the best loss there is: the criterion would flag every run.
    iid = config is not None and config.data.source == "zipf"
    if not iid and math.isfinite(final) and math.isfinite(h_uni) and final >= h_uni - margin:
        reasons.append(f"held-out loss {final:.4f} ≥ unigram entropy {h_uni:.4f} − {margin:g} nats")
    if reference is not None:
        for name, ref_name in (("hidden_effective_rank", "hidden_effective_rank"),
                               ("emb_effective_rank_q", "emb_effective_rank")):
            mine, ref = _last(history, name), _last(reference, ref_name)
            if math.isfinite(mine) and math.isfinite(ref) and mine < frac * ref:
                reasons.append(f"{name} {mine:.3g} < {frac:g} x full-precision {ref_name} {ref:.3g}")
    return bool(reasons), "; ".join(reasons)


# ---------------------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------------------


def _new_history(steps: int) -> dict[str, np.ndarray]:
    return {k: np.full(steps + 1, np.nan, np.float64) for k in FIELDS}


def _to_dataset(hist: dict[str, np.ndarray], n_rows: int, attrs: dict[str, Any]) -> xr.Dataset:
    steps = np.arange(n_rows)
    ds = xr.Dataset({k: ("step", v[:n_rows].copy()) for k, v in hist.items()}, coords={"step": steps})
    ds.attrs.update(attrs)
    return ds


def _write(ds: xr.Dataset, out: Path) -> None:
    tmp = out / (HISTORY_FILE + ".tmp")
    ds.to_netcdf(tmp, engine="netcdf4")
    tmp.replace(out / HISTORY_FILE)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


def _manager(out: Path) -> Any:
    import orbax.checkpoint as ocp

    opts = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager((out / "checkpoints").absolute(), options=opts)


def _save(mgr: Any, step: int, tree: dict) -> None:
    import orbax.checkpoint as ocp

    mgr.save(step, args=ocp.args.StandardSave(tree))
    mgr.wait_until_finished()


def _restore(mgr: Any, template: dict) -> tuple[int, dict] | None:
    import orbax.checkpoint as ocp

    step = mgr.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    return step, mgr.restore(step, args=ocp.args.StandardRestore(abstract))


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------
# Compiled once per (model structure, config): a resumed run reuses the compilation of the first.


@partial(jax.jit, static_argnums=(0, 1, 2))
def _train_step(graphdef: Any, config: TrainConfig, extra: Any, template: Any, rest: Any, p: dict, state: Any,
                step: jax.Array, toks: jax.Array) -> tuple[Any, ...]:
    """One AdamW step on the batch of ``step``; returns (params, opt state, loss, gradient norm)."""
    seed = config.seed
    batch = batch_at(toks, seed, step, config.batch_size, config.context)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 2), step)

    def loss_fn(q: dict) -> jax.Array:
        logits, _ = _merge(graphdef, template, rest, q)(batch[:, :-1], Ctx(key))
        return cross_entropy(logits, batch[:, 1:])

    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, state = make_optimizer(config, extra).update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss, optax.tree.norm(grads)


@partial(jax.jit, static_argnums=0)
def _eval_step(graphdef: Any, template: Any, rest: Any, p: dict, w: jax.Array) -> tuple[jax.Array, ...]:
    """Held-out loss, final hidden states and the embedding table."""
    logits, h = _merge(graphdef, template, rest, p)(w[:, :-1], Ctx(jax.random.key(0)))
    return cross_entropy(logits, w[:, 1:]), h, p["embed"]["embedding"]


# ---------------------------------------------------------------------------------------------------------


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

    Returns:
      The history ``xarray.Dataset`` (dim ``step``); attrs: ``config`` (JSON), ``zipfrmt_version``, ``status``
      (``ok``/``diverged``/``collapsed``/``interrupted``), ``reason``, ``stopped_at`` (−1 if it ran to the end),
      ``unigram_entropy``, ``collapse_criterion``, ``data``, ``n_params``, ``tokens_per_step``.
    """
    config = validate(config)
    data = load_tokens(config)
    V = config.model.vocab_size
    model = build_model(config)
    graphdef, template, rest, params = _split(model)
    opt = make_optimizer(config, extra_transform)
    opt_state = opt.init(params)
    train_tokens = jnp.asarray(data.train)
    windows = jnp.asarray(eval_windows(data.eval, config.context, config.eval_batches * config.batch_size))
    schedule = lr_schedule(config)
    seed, B, L = config.seed, config.batch_size, config.context

    def step_fn(p: dict, state: Any, step: jax.Array, toks: jax.Array) -> tuple[Any, ...]:
        return _train_step(graphdef, config, extra_transform, template, rest, p, state, step, toks)

    def eval_fn(p: dict, w: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return _eval_step(graphdef, template, rest, p, w)

    hist = _new_history(config.steps)
    status, reason, stopped_at, start = "ok", "", -1, 0
    out = Path(out_dir) if out_dir is not None else None
    mgr = None
    cfg_json = config_to_json(config)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        saved_cfg = out / "config.json"
        if saved_cfg.exists() and saved_cfg.read_text() != cfg_json:
            raise ValueError(f"out_dir: '{out}' holds a run of a different config; use another directory")
        saved_cfg.write_text(cfg_json)
        mgr = _manager(out)
        restored = _restore(mgr, {"params": params, "opt_state": opt_state, "history": hist})
        if restored is not None:
            start, tree = restored
            params, opt_state = tree["params"], tree["opt_state"]
            hist = {k: np.asarray(tree["history"][k], np.float64) for k in FIELDS}

    def record_eval(step: int, p: dict) -> None:
        loss, h, E = eval_fn(p, windows)
        loss = float(loss)
        hist["eval_loss"][step], hist["perplexity"][step] = loss, perplexity(loss)
        if step % config.probe_every == 0 or step == config.steps:
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 3), step)
            for k, v in probes.probe_all(E, config.quant_embed, h, key).items():
                hist[k][step] = v

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="training", unit="step", file=sys.stderr,
                   dynamic_ncols=True)
    try:
        if start == 0:
            record_eval(0, params)
        last_sr = _last_finite(hist["emb_stable_rank"][: start + 1])
        for t in range(start, config.steps):
            s = t + 1
            params, opt_state, loss, gnorm = step_fn(params, opt_state, jnp.asarray(t, jnp.int32), train_tokens)
            loss, gnorm = float(loss), float(gnorm)
            hist["loss"][s], hist["grad_norm"][s], hist["lr"][s] = loss, gnorm, float(schedule(t))
            if not (math.isfinite(loss) and math.isfinite(gnorm)):
                status, stopped_at = "diverged", s
                reason = f"non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'} at step {s}"
                break
            if loss > config.blowup_factor * math.log(V):
                status, stopped_at = "diverged", s
                reason = (f"loss blow-up at step {s}: {loss:.4g} > blowup_factor·ln V = "
                          f"{config.blowup_factor * math.log(V):.4g}")
                break
            if s % config.eval_every == 0 or s % config.probe_every == 0 or s == config.steps:
                record_eval(s, params)
                last_sr = _last_finite(hist["emb_stable_rank"][: s + 1])
            if bar is not None:
                bar.update()
                bar.set_postfix_str(f"loss {loss:.3f} sr {last_sr:.2f}")
            if mgr is not None and (s % config.checkpoint_every == 0 or s == config.steps):
                _save(mgr, s, {"params": params, "opt_state": opt_state, "history": hist})
            if stop_after is not None and s >= stop_after and s < config.steps:
                if mgr is not None and s % config.checkpoint_every:
                    _save(mgr, s, {"params": params, "opt_state": opt_state, "history": hist})
                status, reason, stopped_at = "interrupted", f"stopped after {s} steps (stop_after)", s
                break
    finally:
        if bar is not None:
            bar.close()
        if mgr is not None:
            mgr.close()

    n_rows = (stopped_at + 1) if stopped_at >= 0 else config.steps + 1
    attrs = {
        "config": cfg_json,
        "zipfrmt_version": zipfrmt.__version__,
        "status": status,
        "reason": reason,
        "stopped_at": int(stopped_at),
        "unigram_entropy": float(data.unigram_entropy),
        "collapse_criterion": COLLAPSE_CRITERION,
        "data": data.description,
        "n_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "tokens_per_step": int(B * L),
    }
    ds = _to_dataset(hist, n_rows, attrs)
    if status == "ok":
        collapsed, why = collapse_verdict(ds, reference, config)
        if collapsed:
            ds.attrs["status"], ds.attrs["reason"] = "collapsed", why
    if out is not None:
        _write(ds, out)
    return ds


def _last_finite(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else math.nan


def trained_model(
    config: TrainConfig, out_dir: str | Path, *, extra_transform: optax.GradientTransformation | None = None
) -> nnx.Module:
    """The model of a finished run, restored from the last checkpoint in ``out_dir``.

    ``extra_transform``: the one the run was trained with (its state is part of the checkpoint, so the
    restore template needs it; e.g. :func:`zipfrmt.mitigate.s2d.s2d`).
    """
    config = validate(config)
    model = build_model(config)
    graphdef, template, rest, params = _split(model)
    opt_state = make_optimizer(config, extra_transform).init(params)
    mgr = _manager(Path(out_dir))
    try:
        restored = _restore(mgr, {"params": params, "opt_state": opt_state, "history": _new_history(config.steps)})
    finally:
        mgr.close()
    if restored is None:
        raise FileNotFoundError(f"out_dir: no checkpoint in '{out_dir}'")
    return _merge(graphdef, template, rest, restored[1]["params"])


def history_config(history: xr.Dataset) -> dict[str, Any]:
    """The config dict stored in a history's attributes."""
    return json.loads(history.attrs["config"])


def replace(config: TrainConfig, **kw: Any) -> TrainConfig:
    """``dataclasses.replace`` that re-validates."""
    return validate(dataclasses.replace(config, **kw))
