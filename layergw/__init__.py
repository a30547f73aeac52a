"""layergw: find groups of functionally similar layers with Gromov-Wasserstein distances.

``import layergw`` imports neither Ray nor torch.
"""
__version__ = "0.1.0"
