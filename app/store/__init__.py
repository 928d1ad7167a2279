"""The model store: model cards, safe weight loading and the loaded models."""
