"""Planning: CEM through the predictor, model-predictive control, precision and the paper's
evaluation."""
