"""What every model family needs from PyTorch, written once: device choice
(:mod:`~layergw.torchkit.device`), forward-hook capture and pooling
(:mod:`~layergw.torchkit.hooks`, :mod:`~layergw.torchkit.pooling`), checkpoint and training-state
files (:mod:`~layergw.torchkit.checkpoint`) and text batching (:mod:`~layergw.torchkit.text`).

Importing this package does not import torch; its modules do.
"""
