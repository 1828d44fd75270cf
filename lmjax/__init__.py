"""lmjax: language-model pretraining in JAX/Flax.

Importing lmjax adds its CPU XLA flags before JAX starts (see `lmjax.xla_cpu`), so Python
programs and the `lmjax` command train with the same flags.
"""

from lmjax.xla_cpu import apply_cpu_flags

apply_cpu_flags()
