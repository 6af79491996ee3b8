"""Training: tabular models (scikit-learn/XGBoost) and the PyTorch loop."""
