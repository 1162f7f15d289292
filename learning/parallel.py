"""Data-parallel `sleep` (issue 14): the same night in N processes started by `accelerate launch`
(or `torchrun`), each training on its own share of every optimizer step's items.

    accelerate launch --multi_gpu --num_processes 2 -m learnagent.cli.app sleep     # 2 GPUs, or
    CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes 2 -m learnagent.cli.app sleep

The launcher sets RANK / WORLD_SIZE / MASTER_ADDR; `init` joins the process group over
torch.distributed (NCCL on CUDA, gloo on CPU). accelerate's own state object is not used for this:
on a machine without CUDA it reports one process even when launched with two (accelerate 1.15,
checked), while torch.distributed sees both.

What is split and what is not:
- an optimizer step takes `grad_accum x world` items; process r trains items r, r + world, ...
  (`share`), and gradients are averaged across processes before clipping (`average_gradients`), so
  N processes with grad_accum 1 compute the step one process does with grad_accum N;
- every process starts from rank 0's weights (`broadcast_parameters`), and a stop (time limit,
  Ctrl-C) is agreed on so that no process waits on one that left (`any_true`);
- rank 0 alone writes: the registry, the sleep states, checkpoints, the adapter, the gate; it alone
  reads the store and the repository and hands the others the training job (services/sleep_night.py).

On CUDA each process uses the GPU of its LOCAL_RANK (NCCL); the tensors of a collective are on it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

# How long a process waits in one collective. The longest wait is the first: the others wait for
# rank 0's survey (settle, the episodes, mining and retrieving the repository's code) before the
# training job is handed over; NCCL's default (10 minutes) can be shorter than that on a large
# repository. A process that dies is noticed by the launcher, which ends the others, not by this.
WAIT = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """This process's place among those the launcher started (0 of 1 without a launcher)."""
    return Ranks(int(os.environ.get("RANK", "0")), max(1, int(os.environ.get("WORLD_SIZE", "1"))))


def init() -> Ranks:
    """Join the launcher's process group (once); a lone process does nothing."""
    r = ranks()
    if r.world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" is then this GPU
            dist.init_process_group(backend, timeout=WAIT)
    return r


def _device():
    """Where a collective's own tensors live: NCCL reduces only CUDA tensors (this process's GPU)."""
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def close() -> None:
    """Leave the process group (a process that exits without it aborts under gloo)."""
    if ranks().world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def share(items_per_rank: int) -> list[int]:
    """The global indices of this process's items in one optimizer step (rank r: r, r + world, ...)."""
    r = ranks()
    return [micro * r.world + r.rank for micro in range(items_per_rank)]


def average_gradients(params) -> None:
    """Mean of every process's gradients, in place, in one all-reduce."""
    r = ranks()
    if r.world == 1:
        return
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= r.world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).clone()
        offset += n


def sum_values(*values: float) -> list[float]:
    """Each value summed over the processes (step statistics)."""
    if ranks().world == 1:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return t.tolist()


def any_true(flag: bool) -> bool:
    """True on every process when it is true on any."""
    if ranks().world == 1:
        return flag
    return sum_values(float(flag))[0] > 0


def broadcast_parameters(params) -> None:
    """Rank 0's values of `params` on every process."""
    if ranks().world == 1:
        return
    import torch.distributed as dist

    for p in params:
        dist.broadcast(p.data, src=0)


def broadcast_object(value=None):
    """Rank 0's `value` (any picklable object) on every process."""
    if ranks().world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
