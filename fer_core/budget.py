"""Training to a wall-clock budget (`fertune train --time-budget MIN`): how many epochs fit, from measured speed.

The plan is made once the first training steps and a validation pass have been timed on this machine, so
it holds on any CPU or GPU: the time left, less the closing evaluation and a margin, buys whole epochs
(training + validation) and then, with what remains, part of one more (its training steps + its
validation). The plan is a number of optimizer steps, the learning-rate schedule is laid over them, and
the last epoch may be partial: an epoch of FER2013 is minutes on 2 cores, too coarse a unit for a budget.
If an epoch then runs more than `DRIFT` slower or faster than planned, the plan is made once more from the
measured epoch time; smaller drifts add up, so the last epoch's length is set from the measured pace when it
starts (the schedule's tail moves with it). `fit` also stops at an epoch boundary before an epoch that could
not end in time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

DRIFT = 0.15          # re-plan once when an epoch's time is off the plan by more than this fraction
MARGIN = 0.02         # of the budget kept free: timing noise, the last checkpoint write, process exit
FIXED_SECONDS = 1.0   # the closing evaluation's model load, report and file writes (measured: under 1 s)
PROBE_STEPS = 30      # training steps timed before planning (after WARM_STEPS untimed ones)
WARM_STEPS = 3


@dataclass
class TimeBudget:
    """`deadline` is the time.time() by which the whole command must have ended (it started the clock
    before loading data); `final_images` is how many images the closing evaluation scores (TTA counts
    each image twice)."""
    deadline: float
    final_images: int
    minutes: float
    epoch_seconds: float = 0.0    # the plan: seconds per epoch (training + validation)
    step_seconds: float = 0.0     # the plan: seconds per training step
    val_seconds: float = 0.0      # the plan: seconds per validation pass
    final_seconds: float = 0.0    # the plan: seconds of the closing evaluation
    replanned: bool = False

    @classmethod
    def starting_now(cls, minutes: float, final_images: int, started: float | None = None) -> TimeBudget:
        if not minutes > 0:
            raise ValueError(f"--time-budget must be a positive number of minutes, got {minutes}")
        return cls(deadline=(started or time.time()) + 60 * minutes, final_images=final_images, minutes=minutes)

    def left(self) -> float:
        """Seconds left for epochs: to the deadline, less the closing evaluation and the margin."""
        return self.deadline - time.time() - self.final_seconds - MARGIN * 60 * self.minutes

    def plan(self, train_img_s: float, eval_img_s: float, steps_per_epoch: int, batch_size: int,
             val_images: int, epoch_spent: float = 0.0) -> int:
        """Optimizer steps that fit, from the start of the epoch under way (`epoch_spent` seconds into it);
        at least one epoch's."""
        self.final_seconds = self.final_images / eval_img_s + FIXED_SECONDS
        self.step_seconds = batch_size / train_img_s
        self.val_seconds = val_images / eval_img_s
        self.epoch_seconds = steps_per_epoch * self.step_seconds + self.val_seconds
        return max(steps_per_epoch, self._steps_in(self.left() + epoch_spent, steps_per_epoch))

    def _steps_in(self, seconds: float, steps_per_epoch: int) -> int:
        whole = max(0, math.floor(seconds / self.epoch_seconds))
        rest = seconds - whole * self.epoch_seconds - self.val_seconds  # a partial epoch validates too
        part = min(steps_per_epoch - 1, max(0, math.floor(rest / self.step_seconds)))
        return whole * steps_per_epoch + part

    def drifted(self, epoch_seconds: float) -> bool:
        return not self.replanned and abs(epoch_seconds / self.epoch_seconds - 1) > DRIFT

    def replan(self, steps_done: int, epoch_seconds: float, steps_per_epoch: int) -> int:
        """Total steps after a measured epoch of `epoch_seconds`: those done plus those that still fit."""
        self.replanned = True
        scale = epoch_seconds / self.epoch_seconds
        self.step_seconds, self.val_seconds = self.step_seconds * scale, self.val_seconds * scale
        self.final_seconds = FIXED_SECONDS + (self.final_seconds - FIXED_SECONDS) * scale
        self.epoch_seconds = epoch_seconds
        return steps_done + self._steps_in(self.left(), steps_per_epoch)

    def steps_that_fit(self, step_seconds: float, val_seconds: float) -> int:
        """Training steps the last epoch can take, with its validation, at a measured pace."""
        return math.floor((self.left() - val_seconds) / step_seconds)

    def room_for(self, steps: int) -> bool:
        """Whether an epoch of `steps` training steps, with its validation, can end in time."""
        return self.left() >= steps * self.step_seconds + self.val_seconds
