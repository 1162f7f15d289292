"""Where a model runs: one device and dtype policy for every caller (`do`, `sleep`, the gate, `eval`).

Policy: CUDA when present (bf16 where the card does it natively, else fp32), else Apple MPS
(fp32), else CPU (fp32: half precision on CPU is slow or lossy). A caller may name a device or
dtype; "auto" applies the policy. The learning code measures on the same placement `do` runs
on because both ask this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from learnagent.core.errors import LearnagentError

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype_name: str  # one of DTYPES

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)


def pick_device(device: str | None = None) -> str:
    if device and device != "auto":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise LearnagentError(f"device '{device}' asked for but CUDA is not available")
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str):
    """bf16 on CUDA cards that do it natively; fp32 elsewhere."""
    return getattr(__import__("torch"), _dtype_name(device))


def _dtype_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bfloat16"
    return "float32"


def placement(device: str | None = "auto", dtype=None) -> Placement:
    """The policy's placement, or the one asked for (`dtype` a name, "auto"/None, or a torch dtype)."""
    where = pick_device(device)
    if dtype is None or dtype == "auto":
        return Placement(where, _dtype_name(where))
    name = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise LearnagentError(f"unknown dtype '{dtype}' (auto, {', '.join(DTYPES)})")
    return Placement(where, name)
