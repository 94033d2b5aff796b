"""LeWorldModel, the library: envs/ and data/ (frames and actions), world_model/ (the network,
SIGReg, checkpoints), training/, planning/ (CEM + MPC, the paper's evaluation), analysis/
(probing, t-SNE, straightness, surprise) and cli/ (the `lewm` command line).

DESIGN.md is the map."""

__version__ = "0.1.0"
