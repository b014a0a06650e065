"""The challenge every result here is judged against: fewer than BUDGET trainable parameters (BatchNorm
included) and, trained for at most MAX_EPOCHS epochs, TARGET % test accuracy in each of the LAST_EPOCHS last
epochs, for every seed. It imports nothing, so every layer may use it.
"""

BUDGET = 8_000  # trainable parameters must stay strictly below this
TARGET = 99.4  # test accuracy, in percent, to hold ...
LAST_EPOCHS = 3  # ... in each of the last LAST_EPOCHS epochs
MAX_EPOCHS = 15  # at most this many epochs (TrainConfig's default)


def fmt_acc(v: float, digits: int = 2) -> str:
    """An accuracy to `digits` decimals, one more where rounding would cross TARGET (99.398 must not print 99.40)."""
    if (round(v, digits) >= TARGET) != (v >= TARGET):
        digits += 1
    return f"{v:.{digits}f}"
