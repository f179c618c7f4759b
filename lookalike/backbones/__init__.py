"""Backbones: the registry of CNNs, how each preprocesses, and the runtimes that embed pictures with them."""
