"""Labeling windows (installed as ``prefrl.ui``); pygame is imported only here."""
