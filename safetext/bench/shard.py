"""Split the work across processes with accelerate and merge the records on every process.

Launch on one machine with ``accelerate launch --multi_gpu --num_processes N``, which starts
N processes through torchrun on GPUs *or* CPUs (on a CPU-only machine the processes join a
gloo group). Note: ``accelerate launch --cpu --num_processes N`` starts only one process
unless an MPI hostfile is given (accelerate 1.x), so it does not shard.

Under ``accelerate launch --num_processes N`` each process takes a contiguous share of the
(prompt, seed) items (``PartialState.split_between_processes``), generates and scores it,
and ``gather_object`` brings all records to every process. Only the main process writes
files; every process computes the same gate verdict, so they all exit alike. Without a
launcher this is a single process and nothing is split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def process_state() -> Any:
    """accelerate's state for this process. Without CUDA it asks for the CPU explicitly: only
    then does accelerate join the processes of a launch into one gloo group (MULTI_CPU)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def my_share(state: Any, work: Sequence[T]) -> list[T]:
    if state.num_processes == 1:
        return list(work)
    with state.split_between_processes(list(work)) as mine:
        return list(mine)


def gather(state: Any, records: list[T]) -> list[T]:
    if state.num_processes == 1:
        return records
    from accelerate.utils import gather_object

    return list(gather_object(records))
