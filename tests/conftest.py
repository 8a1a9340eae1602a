import os

import pytest


# Headless everywhere: MuJoCo through EGL, pygame without a screen or sound card.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


@pytest.fixture
def session_of():
    """``session_of(run_dir, **kwargs)`` opens a labeling session; all are closed after the test."""
    from prefrl.ui.labeler import LabelingSession  # pygame: only for the tests that label

    made = []

    def make(run_dir, **kwargs):
        made.append(LabelingSession(run_dir, **kwargs))
        return made[-1]
    yield make
    for s in made:
        s.close()
