"""Lifelong data selection (LAMP-style): sample vectors, scores, clusters and selectors."""
