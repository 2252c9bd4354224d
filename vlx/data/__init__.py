"""Data sources for explanations: the synthetic ShapesWorld and loaders for real formats."""
