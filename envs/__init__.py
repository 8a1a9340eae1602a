"""Environments shipped with prefrl (installed as ``prefrl.envs``)."""
