"""Accelerator peaks that turn model FLOPs (each model family's `train_flops_per_sequence`) into MFU.

MFU (model FLOPs utilisation) counts the FLOPs the model needs (forward + backward = 3x forward), not what
the hardware executed: recomputation under remat is not credited, as in PaLM's definition.
"""

from __future__ import annotations

import jax

# Dense bf16 peak per jax device, from the vendors' datasheets. TPU v2/v3 expose each core as a device.
PEAK_BF16_FLOPS = {
    "TPU v2": 22.5e12,
    "TPU v3": 61.5e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5": 459e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
    "Tesla T4": 65e12,
}


def peak_flops_per_device(device: jax.Device | None = None, override_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one device: `override_tflops` if set, else the table by `device_kind`, else None."""
    if override_tflops:
        return override_tflops * 1e12
    kind = (device or jax.devices()[0]).device_kind
    # Longest matching prefix, so "TPU v5 lite" is not read as "TPU v5".
    matches = [k for k in PEAK_BF16_FLOPS if kind.startswith(k)]
    return PEAK_BF16_FLOPS[max(matches, key=len)] if matches else None
