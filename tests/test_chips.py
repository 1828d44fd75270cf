"""`lmjax.chips`: JAX's device kinds map to the published dense bf16 peaks (Google's Cloud TPU
pages, NVIDIA's datasheets), the more specific names first; a CPU has none."""

import pytest

from lmjax.chips import chip_peak


@pytest.mark.parametrize("device_kind, name, tflops", [
    ("TPU v4", "TPU v4", 275), ("TPU v5 lite", "TPU v5e", 197), ("TPU v5", "TPU v5p", 459),
    ("TPU v6 lite", "TPU v6e", 918), ("NVIDIA A100-SXM4-80GB", "NVIDIA A100", 312),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", 989), ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe", 756),
    ("NVIDIA H200", "NVIDIA H200", 989),
])
def test_device_kinds_map_to_published_peaks(device_kind, name, tflops):
    assert chip_peak(device_kind) == (name, tflops * 1e12)


def test_a_cpu_has_no_published_peak():
    assert chip_peak("cpu") is None
