"""Turning stored clips into frames, in the labeling process (training never renders).

MuJoCo clips carry the simulator state per step and are replayed in this process's own
env instance; other envs' clips carry frames recorded during training (only when a human
labels; see ``RecordFrames``).
"""
from __future__ import annotations

import numpy as np

from prefrl.clips import Clip
from prefrl.environment import is_mujoco, make_env, set_sim_state


class ClipRenderer:
    """Frames for clips of ``env_id``.

    Args:
        env_id: the gymnasium id the clips came from.
        width, height: frame size for replayed MuJoCo clips.

    The MuJoCo env (and its EGL context) belongs to the thread that first calls
    :meth:`frames`; create and use a renderer in one thread.
    """

    def __init__(self, env_id: str, width: int = 320, height: int = 240):
        self.env_id, self.width, self.height = env_id, width, height
        self._env = None
        probe = make_env(env_id, record_states=False)
        self._mujoco = is_mujoco(probe)
        dt = getattr(probe.unwrapped, "dt", None)
        fps = probe.metadata.get("render_fps")
        self.fps = float(1 / dt) if dt else float(fps or 30)
        probe.close()

    def frames(self, clip: Clip) -> np.ndarray:
        """``uint8 [T, H, W, 3]``; padded steps repeat the last real frame."""
        if clip.frames is not None:
            return clip.frames
        if clip.states is None or not self._mujoco:
            raise ValueError(f"a clip of {self.env_id} has neither frames nor simulator states to replay; "
                             "clips get frames only when a human labeler is on (--oracle human)")
        if self._env is None:
            self._env = make_env(self.env_id, render_mode="rgb_array", record_states=False,
                                 width=self.width, height=self.height)
            self._env.reset(seed=0)
            _fast_scene(self._env)
        out = []
        for state in clip.states:
            set_sim_state(self._env, state)
            out.append(self._env.render())
        return np.asarray(out, dtype=np.uint8)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def _fast_scene(env) -> None:
    """Turn off shadows and reflections: about 4× faster software rendering (12 → 48 fps
    for 320×240 Hopper frames, measured here under load), and a person judging motion
    does not need them."""
    import mujoco

    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return
    scene = renderer._get_viewer("rgb_array").scn
    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
