"""Probe sets and task datasets."""
