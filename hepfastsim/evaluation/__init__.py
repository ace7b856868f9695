"""Shared evaluation of fast-simulation models against a reference (metrics, plots, validate)."""
