"""The world model: its config and presets, the LeWM network, SIGReg, checkpoints and CPU
kernels."""
