"""Rendering the next pair in a background thread while the current one plays.

Rendering a MuJoCo clip pair takes a good fraction of a second or more; doing it after
the answer would leave the labeler staring at a blank window. The session claims one
query ahead and hands its clips here, so the next pair goes on screen within a frame of
the answer.

The thread owns its :class:`ClipRenderer` (a MuJoCo EGL context is bound to the thread
that created it) but no store connection: claims and clip loading stay on the session's
one connection, because a second :class:`PreferenceStore` in the same process re-reads
the file with a plain ``open()``, and closing that releases the process's POSIX locks on
it (letting another process delete the WAL under this one).
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np

from prefrl.clips import Clip, Query

@dataclass
class Prepared:
    """A query with both clips rendered, ready to go on screen."""

    query: Query
    left: np.ndarray
    right: np.ndarray
    lengths: tuple[int, int]
    fps: float


class Prefetcher(threading.Thread):
    """Renders pairs handed to it, one at a time, in order.

    Args:
        env_id: the run's env id, or ``None`` to take it from the first clip.
        size: ``(width, height)`` of replayed frames.

    Results (:class:`Prepared`, or the exception the thread died of) arrive on
    :attr:`results`.
    """

    def __init__(self, env_id: str | None, size: tuple[int, int] = (320, 240)):
        super().__init__(name="prefrl-render", daemon=True)
        self.env_id, self.size = env_id, size
        self.results: queue.Queue = queue.Queue()
        self._tasks: queue.Queue = queue.Queue()
        self.pending = 0  # pairs handed over and not yet collected; main thread only

    def render(self, query: Query, left: Clip, right: Clip) -> None:
        """Queue a pair for rendering (main thread)."""
        self.pending += 1
        self._tasks.put((query, left, right))

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish and wait for it (a render in progress completes first)."""
        self._tasks.put(None)
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        renderer = None
        try:
            while (task := self._tasks.get()) is not None:
                query, left, right = task
                if renderer is None:
                    from prefrl.render import ClipRenderer  # gymnasium/MuJoCo: made in this thread

                    renderer = ClipRenderer(self.env_id or left.env_id, *self.size)
                self.results.put(Prepared(query, renderer.frames(left), renderer.frames(right),
                                          (left.length, right.length), renderer.fps))
        except BaseException as e:  # noqa: BLE001  (handed to the main thread, which raises it)
            self.results.put(e)
        finally:
            if renderer is not None:
                renderer.close()
