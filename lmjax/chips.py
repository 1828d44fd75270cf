"""Published dense bfloat16 peak FLOP/s per accelerator chip, the denominator of MFU on GPUs
and TPUs (on CPU there is no published figure: `lmjax.train.flops` measures a matmul).

Sources (dense, i.e. without 2:4 sparsity):
- TPU v4 275, v5e 197, v5p 459, v6e 918 TFLOP/s: "Peak compute per chip (bf16)" in Google's
  Cloud TPU system-architecture pages, docs.cloud.google.com/tpu/docs/{v4,v5e,v5p,v6e}.
- A100 312, H100 SXM 989, H100 PCIe 756 TFLOP/s: NVIDIA's A100 and H100 datasheets (BF16
  Tensor Core; the datasheets print the sparse figure, twice these).
- H200 989 TFLOP/s: NVIDIA's H200 datasheet; the same GH100 compute as the H100 SXM with
  more and faster memory.
"""

from __future__ import annotations

# Matched in order against the lower-cased `jax.devices()[0].device_kind`, so the more
# specific names come first ("tpu v5 lite" is a v5e, plain "tpu v5" a v5p).
PEAK_BF16_FLOPS: tuple[tuple[str, str, float], ...] = (
    ("tpu v6", "TPU v6e", 918e12),
    ("tpu v5 lite", "TPU v5e", 197e12),
    ("tpu v5e", "TPU v5e", 197e12),
    ("tpu v5", "TPU v5p", 459e12),
    ("tpu v4", "TPU v4", 275e12),
    ("h200", "NVIDIA H200", 989e12),
    ("h100 pcie", "NVIDIA H100 PCIe", 756e12),
    ("h100", "NVIDIA H100 SXM", 989e12),
    ("a100", "NVIDIA A100", 312e12),
)


def chip_peak(device_kind: str) -> tuple[str, float] | None:
    """(chip name, dense bf16 peak FLOP/s) for a JAX device kind, or None if not in the table."""
    kind = device_kind.lower()
    for pattern, name, peak in PEAK_BF16_FLOPS:
        if pattern in kind:
            return name, peak
    return None
