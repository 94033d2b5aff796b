"""LeWorldModel core: environments, data, model, SIGReg, trainer, planner, probing, surprise."""

__version__ = "0.1.0"
