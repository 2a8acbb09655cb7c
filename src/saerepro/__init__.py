"""saerepro: a reproducible benchmark of sparse-autoencoder architectures on LM activations.

Reproduces *Improving Dictionary Learning with Gated Sparse Autoencoders* (Rajamanoharan et al.,
arXiv 2404.16014) and compares against TopK (Gao et al., arXiv 2406.04093) and JumpReLU SAEs.
All logic lives here and is testable without Snakemake; ``workflow/`` only wires it together.
"""

__version__ = "0.1.0"

# Registers the saerepro_* architectures with sae-lens, so that after `import saerepro`,
# sae_lens.SAE.load_from_disk(path) rebuilds any SAE this suite trained.
from . import sae as sae
