"""Training to a wall-clock budget (`fertune train --time-budget MIN`): how many epochs fit, from measured speed.

The plan is made once the first training steps and a validation pass have been timed on this machine, so
it holds on any CPU or GPU: the time left, less the closing evaluation and a margin, buys whole epochs
(training + validation) and then, with what remains, part of one more (its training steps + its
validation). The plan is a number of optimizer steps, the learning-rate schedule is laid over them, and
the last epoch may be partial: an epoch of FER2013 is minutes on 2 cores, too coarse a unit for a budget.
At the start of every later epoch the steps still to take are counted again at the median pace of the last
`PACE_EPOCHS` full epochs, so drift of any size moves the schedule's tail instead of overrunning or wasting the
budget, while one epoch slowed by a passing load does not cut the plan (seen on a shared 2-core machine: one
epoch at 1.4x the others' time, from the last epoch's pace alone, cut 9 planned epochs to 7); an epoch more
than `DRIFT` off the plan is logged as a re-plan. When no step fits any more, a short closing epoch
(`CLOSING_FRACTION` of an epoch) still ends the schedule: a run cut off mid-schedule keeps a learning rate
far above its floor, which costs more accuracy than the seconds it saves.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

DRIFT = 0.15          # an epoch this far off the plan is reported as a re-plan (the tail is re-sized anyway)
CLOSING_FRACTION = 0.05  # of an epoch: the closing epoch's length when the budget has no step left
PACE_EPOCHS = 3       # the tail is sized at the median pace of this many last full epochs
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
    paces: list[tuple[float, float]] = field(default_factory=list)  # (step, validation) seconds of full epochs

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

    def resize(self, step_seconds: float, val_seconds: float, steps_per_epoch: int) -> tuple[int, bool]:
        """(training steps still to take, whether the last full epoch, `step_seconds` a step and `val_seconds`
        its validation, was a re-plan's drift off the plan), at the median pace of the last PACE_EPOCHS full
        epochs. At least a closing epoch's steps."""
        replan = abs((steps_per_epoch * step_seconds + val_seconds) / self.epoch_seconds - 1) > DRIFT
        self.paces.append((step_seconds, val_seconds))
        recent = self.paces[-PACE_EPOCHS:]
        step_seconds = statistics.median(p[0] for p in recent)
        val_seconds = statistics.median(p[1] for p in recent)
        epoch_seconds = steps_per_epoch * step_seconds + val_seconds
        # the closing evaluation scores images at the validation's pace
        self.final_seconds = FIXED_SECONDS + (self.final_seconds - FIXED_SECONDS) * val_seconds / self.val_seconds
        self.step_seconds, self.val_seconds, self.epoch_seconds = step_seconds, val_seconds, epoch_seconds
        closing = max(1, round(CLOSING_FRACTION * steps_per_epoch))
        return max(closing, self._steps_in(self.left(), steps_per_epoch)), replan

    def room_for(self, steps: int) -> bool:
        """Whether an epoch of `steps` training steps, with its validation, can end in time."""
        return self.left() >= steps * self.step_seconds + self.val_seconds
