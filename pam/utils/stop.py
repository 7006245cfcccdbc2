"""Graceful stop: SIGTERM or SIGUSR1 ends a run at the next safe point, with a checkpoint.

A scheduler that takes the machines back (SLURM preemption, the warning signal before the wall-time
limit) sends SIGTERM or a chosen signal. :class:`StopSignal` only records it; the training loop asks
:meth:`StopSignal.agreed` after every optimiser step, an all-reduce over the ranks, so every rank
stops after the same step even when the signal reached one rank only. The trainer then writes a
step checkpoint (atomic, ``pam/train/state.py``) and the process exits with :data:`EXIT_STOPPED`.
Evaluation (``pam eval``) stops between batches of items instead: its predictions file is its
checkpoint; it prints how many predictions are saved and exits with the same code
(:class:`StopRequested`). Each rank stops on its own signal there: ranks own disjoint items.

A second signal while the checkpoint is being written changes nothing: the save runs to its end.
If the process is killed before that (SIGKILL after the scheduler's grace time), the half-written
folder keeps its temporary name and the previous checkpoint stays the newest valid one.
"""

from __future__ import annotations

import os
import signal
import threading

EXIT_STOPPED = 75  # "temporary failure, try again" (sysexits EX_TEMPFAIL): stopped on a signal, resumable
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")


class StopSignal:
    """Records SIGTERM/SIGUSR1 while installed (a context manager; the previous handlers come back)."""

    def __init__(self, signals: tuple[str, ...] = STOP_SIGNALS, *, what: str = "training", device=None):
        self.device = device  # of the all-reduce in agreed(); None: CPU (gloo)
        self.signals = tuple(getattr(signal, name) for name in signals)
        self.what = what
        self.received: list[str] = []
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # Python accepts handlers there only
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if len(self.received) == 1:
            msg = f"{name}: {self.what} stops after the current step and saves its state"
        else:
            msg = (
                f"{name} again: the stop already under way finishes its save first "
                "(the previous checkpoint stays until then)"
            )
        os.write(2, f"[pam] {msg}\n".encode())  # no logging in a signal handler: it may hold the lock

    @property
    def requested(self) -> bool:
        """A signal reached this process."""
        return bool(self.received)

    def agreed(self) -> bool:
        """True on every rank when a signal reached any rank (a collective: every rank must call it)."""
        import torch
        import torch.distributed as dist

        flag = 1.0 if self.received else 0.0
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return flag > 0
        t = torch.tensor([flag], dtype=torch.float32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)


class StopRequested(SystemExit):
    """Raised between evaluation batches after a stop signal; exits with :data:`EXIT_STOPPED`."""

    def __init__(self, message: str):
        super().__init__(EXIT_STOPPED)
        self.message = message

    def __str__(self) -> str:
        return self.message
