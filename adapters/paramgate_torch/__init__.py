"""paramgate's PyTorch backend: an ``nn.Module`` and any ``torch.optim.Optimizer``.

Registered through the ``paramgate`` entry-point group like any third-party
adapter.  Importing this package does not import torch: the adapter claims a
model only once torch is in ``sys.modules`` and the model is an ``nn.Module``.
Under torch.distributed (DDP, FSDP2, DeepSpeed ZeRO-3) the same calls work on
every rank; :func:`fsdp_preflight` checks a model before FSDP1 wraps it.
"""

from paramgate_torch.distributed import fsdp_preflight

__all__ = ["fsdp_preflight"]
