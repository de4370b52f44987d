"""Mitigations of spectral flattening, as baselines: S2D (an optax transform) and SpecQuant.

* :mod:`zipfrmt.mitigate.s2d` — Selective Spectral Decay (Chavan et al., arXiv 2602.14432):
  ``s2d.s2d(...)`` (the optax transform), ``s2d.s2d_penalty``, ``s2d.s2d_gradient``, ``s2d.select_k_pcdr``.
* :mod:`zipfrmt.mitigate.specquant` — smoothing + channel-wise Fourier truncation + residual quantization
  (Zhao et al., arXiv 2511.11663): ``specquant.specquant(...)``.
* :mod:`zipfrmt.mitigate.compare` — RTN vs SpecQuant vs S2D on one matrix, beside the RMT predictions.
* :mod:`zipfrmt.mitigate.lm` — both applied to a :mod:`zipfrmt.nn` language model: S2D's weights and its
  ``k`` per layer, a SpecQuant copy of a model for post-training quantization.

The submodules are exported as modules (``from zipfrmt.mitigate import s2d, specquant``), not their functions:
each module has a function of its own name, and re-exporting it would hide the module.

Definitions and the choices made where the papers are silent: ``docs/mitigations.md``.
"""

from zipfrmt.mitigate import s2d, specquant

__all__ = ["s2d", "specquant"]
