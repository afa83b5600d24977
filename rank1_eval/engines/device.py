"""Device and dtype checks shared by the in-process engines: fail early, say what to pass instead."""

from __future__ import annotations

from typing import Any

DTYPES = ("float16", "bfloat16", "float32", "auto")


class DeviceError(ValueError):
    """A device/dtype combination that cannot run here."""


def check_device(device: str, dtype: str, num_gpus: int = 1) -> None:
    """Validate ``device``/``fp_options``/``num_gpus`` against what torch can see (imports torch)."""
    import torch

    if dtype not in DTYPES:
        raise DeviceError(f"unknown dtype (fp_options) {dtype!r}; choose one of {', '.join(DTYPES)}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                "device='cuda' but no CUDA GPU is visible (torch.cuda.is_available() is False); "
                "pass device='cpu' with fp_options='float32' (or 'bfloat16')"
            )
        visible = torch.cuda.device_count()
        if num_gpus > visible:
            raise DeviceError(f"num_gpus={num_gpus} but only {visible} CUDA GPU(s) are visible")
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise DeviceError("this GPU cannot run bfloat16; pass fp_options='float16' or 'float32'")
    elif device == "cpu":
        if dtype == "float16":
            raise DeviceError(
                "fp_options='float16' is not supported for CPU inference; pass fp_options='float32' "
                "(exact) or 'bfloat16' (faster on CPUs with AVX-512 bf16)"
            )
    else:
        raise DeviceError(f"unknown device {device!r}; pass 'cuda' or 'cpu'")


def torch_dtype(dtype: str) -> Any:
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "auto": "auto"}[dtype]
