"""Quantization: one spec type, one format registry, one entry point.

    from zipfrmt.quant import QuantSpec, quantize, fake_quant
    r = quantize(W, "int3-group32")                    # or QuantSpec(bits=3, granularity="group", group_size=32)
    r = quantize(W, "nf4")                             # a real format, through Qwix: same result type
    r.regime, r.noise_var_measured / r.noise_var_model, r.bussgang_gain
    Wq = fake_quant(W, "int4-row-stochastic", key=key) # straight-through gradient, for training

Modules: :mod:`~zipfrmt.quant.spec` (:class:`QuantSpec` and its text form), :mod:`~zipfrmt.quant.formats`
(the registry: each format's quantizer, block constraints and noise model), :mod:`~zipfrmt.quant.uniform`
(the uniform b-bit quantizer, the ``int`` format), :mod:`~zipfrmt.quant.noise` (measured noise, Bussgang
decomposition, regime, :class:`QuantResult`), :mod:`~zipfrmt.quant.core` (:func:`quantize`,
:func:`fake_quant`), :mod:`~zipfrmt.quant.rowchunks` (row-local quantizers run in chunks of rows, so a large
matrix's temporaries stay small). The random-matrix prediction of the quantized spectrum from a result is
:func:`zipfrmt.rmt.predict_from_result`.
"""

from zipfrmt.quant.core import fake_quant, quantize
from zipfrmt.quant.formats import CLIPS, FORMATS, GRANULARITIES, ROUNDINGS, SCHEMES, Format
from zipfrmt.quant.noise import (
    WIDROW_GAIN_TOL,
    WIDROW_VAR_RTOL,
    QuantResult,
    classify_regime,
    noise_statistics,
)
from zipfrmt.quant.spec import QuantSpec, as_spec, check_spec_shape, parse_granularity

__all__ = [
    "CLIPS",
    "FORMATS",
    "GRANULARITIES",
    "ROUNDINGS",
    "SCHEMES",
    "WIDROW_GAIN_TOL",
    "WIDROW_VAR_RTOL",
    "Format",
    "QuantResult",
    "QuantSpec",
    "as_spec",
    "check_spec_shape",
    "classify_regime",
    "fake_quant",
    "noise_statistics",
    "parse_granularity",
    "quantize",
]
