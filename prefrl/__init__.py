"""prefrl: reinforcement learning from human preferences (Christiano et al. 2017).

Importing this package stays light: simulators, pygame, ale-py and transformers load only
when the part that needs them is used.
"""
__version__ = "0.1.0"
