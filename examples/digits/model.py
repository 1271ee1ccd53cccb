"""Handwritten digits: a logistic regression trained at load time on scikit-learn's own
8x8 digits data set (it ships with the package, so nothing is downloaded).

Input: a list of 64 pixel values from 0 to 16. Output: ``{"digit": 7, "confidence": 0.98}``.
``apply_batch`` predicts many images in one matrix product.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from modelbus_runner import PermanentError

PIXELS = 64
MAX_VALUE = 16.0


def load():
    digits = load_digits()
    model = LogisticRegression(max_iter=1000)
    model.fit(digits.data / MAX_VALUE, digits.target)
    return model


def apply(input, state):
    result = apply_batch([input], state)[0]
    if isinstance(result, Exception):
        raise result
    return result


def apply_batch(inputs, state):
    checked = [_check(value) for value in inputs]
    good = [i for i, value in enumerate(checked) if not isinstance(value, Exception)]
    results = list(checked)  # errors stay in place: one bad image does not fail the batch
    if good:
        images = np.array([checked[i] for i in good], dtype=float) / MAX_VALUE
        for i, proba in zip(good, state.predict_proba(images), strict=True):
            results[i] = {"digit": int(proba.argmax()), "confidence": float(proba.max())}
    return results


def _check(value):
    if not isinstance(value, list) or len(value) != PIXELS:
        return PermanentError(f"send a list of {PIXELS} pixel values")
    if not all(isinstance(v, int | float) and 0 <= v <= MAX_VALUE for v in value):
        return PermanentError("pixel values go from 0 to 16")
    return value
