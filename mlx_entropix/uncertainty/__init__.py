"""Uncertainty and the decision: the six metrics of a step, the sampler's state and draw,
and the compiled device step that packs them for one host read."""
