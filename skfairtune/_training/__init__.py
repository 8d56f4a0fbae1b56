"""Training one masked ViT: the trainer, the skorch net and its callbacks, the model template."""

# Pickles of the flat layout name these classes as ``skfairtune._training.<name>``: the module
# of that name became this package, so it keeps them importable here.
from ._net import (  # noqa: F401
    EpochSeed,
    ImageModel,
    MaskedViTNet,
    NonFiniteLossError,
    StopOnNonFiniteLoss,
    TensorBatchLoader,
    TensorDataset,
    WarmupCosineLR,
)
