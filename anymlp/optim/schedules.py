"""Learning-rate schedules of the 'sgd' solver; host-side state, read at epoch ends."""

from __future__ import annotations


class LearningRateSchedule:
    """scikit-learn's 'constant', 'invscaling' and 'adaptive' schedules.

    ``learning_rate`` is the value the next batch uses.
    """

    def __init__(self, kind: str, learning_rate_init: float, power_t: float = 0.5):
        self.kind = kind
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.power_t = power_t

    def iteration_ends(self, samples_seen: int) -> None:
        """Called after every epoch with ``t_``, the samples seen so far."""
        if self.kind == "invscaling":
            self.learning_rate = self.learning_rate_init / (samples_seen + 1) ** self.power_t

    def trigger_stopping(self, message: str, verbose) -> bool:
        """The stopping rule fired: stop, or (adaptive) divide the rate by 5 and go on."""
        if self.kind != "adaptive":
            if verbose:
                print(message + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(message + " Setting learning rate to %f" % self.learning_rate)
        return False
