"""Trained networks (torch) behind the simulators; built lazily, weights in ``data/``."""
