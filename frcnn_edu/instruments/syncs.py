"""Counting host round-trips (tests, benchmarks, notebooks): Python-level reads (.item(), .tolist(), bool(t), ...
output shape or value the host must learn (nonzero, boolean-mask indexing, masked_select, unique, ...)."""
from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
PYTHON_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")
HIDDEN_SYNC_OPS = {
    aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
    aten._unique.default, aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor, aten.is_nonzero.default,
}


def _has_bool_index(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices if i is not None)


class HiddenSyncCounter(TorchDispatchMode):
    """Counts sync-prone aten ops, including boolean-mask indexing and assignment."""

    def __init__(self):
        super().__init__()
        self.count, self.ops = 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        sync = func in HIDDEN_SYNC_OPS
        if func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default):
            sync = _has_bool_index(args[1])
        if sync:
            self.count += 1
            self.ops.append(str(func))
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_python_reads():
    """Wrap the Tensor methods that read values on the host; yields a list that collects their names."""
    calls: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in PYTHON_READS}

    def wrap(name, original):
        def wrapper(self, *args, **kwargs):
            calls.append(name)
            return original(self, *args, **kwargs)
        return wrapper

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
