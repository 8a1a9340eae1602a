"""Is there a screen to open a window on? Checked before pygame, whose own error is obscure."""
from __future__ import annotations

import os
import sys

from prefrl.errors import UserError


def has_display() -> bool:
    """False on Linux without X11, Wayland or an SDL video driver (e.g. ``dummy``) to use."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))


def require_display(message: str) -> None:
    """Raise ``UserError(message)`` (one line: the problem and the fix) when there is no screen."""
    if not has_display():
        raise UserError(message)
