"""A planted problem for the tests of `search:`: a Transformer whose headline metric, `val/planted`, is a known function
of its learning rate, so that the best lr is known (BEST_LR) and nothing but the lr matters."""

from __future__ import annotations

import math

from nlparena.models import Transformer

BEST_LR = 3e-3
METRIC = "val/planted"


def planted_value(lr: float) -> float:
    """1 at BEST_LR, falling with the square of the distance in decades (0 at 5 decades)."""
    return max(0.0, 1.0 - (math.log10(lr) - math.log10(BEST_LR)) ** 2 / 25)


class PlantedTransformer(Transformer):
    """A Transformer (it trains as one) whose headline metric after each validation is `planted_value(lr)`."""

    headline_metric = METRIC
    headline_mode = "max"

    def logged_metrics(self) -> list[str]:
        return [*super().logged_metrics(), METRIC]

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log(METRIC, planted_value(self.trainer.optimizers[0].param_groups[0]["lr"]))


RISING = "val/rising"


def rising_value(lr: float, epochs: int) -> float:
    """After `epochs` epochs: lr x 100 per epoch, up to 1 (lr 5e-3 reaches 1 after 2 epochs, 1e-3 after 10)."""
    return min(1.0, epochs * lr * 100)


class RisingTransformer(Transformer):
    """A Transformer (it trains as one) whose headline metric after each validation is `rising_value(lr, epochs
    trained)`, so that when a run reaches a target is known."""

    headline_metric = RISING
    headline_mode = "max"

    def logged_metrics(self) -> list[str]:
        return [*super().logged_metrics(), RISING]

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self.trainer.sanity_checking:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.log(RISING, rising_value(lr, self.trainer.current_epoch + 1))
