"""paramgate's PyTorch backend: an ``nn.Module`` and any ``torch.optim.Optimizer``.

Registered through the ``paramgate`` entry-point group like any third-party
adapter.  Importing this package does not import torch: the adapter claims a
model only once torch is in ``sys.modules`` and the model is an ``nn.Module``.
"""

__all__: list[str] = []
