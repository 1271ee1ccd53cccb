"""Write samples.json: two images of each digit from scikit-learn's digits data set, with
their labels, for README examples and tests. Run with the model's own environment:

    python examples/digits/make_samples.py
"""

import json
from pathlib import Path

from sklearn.datasets import load_digits


def main() -> None:
    digits = load_digits()
    samples = []
    for digit in range(10):
        indexes = [i for i, label in enumerate(digits.target) if label == digit][:2]
        samples += [
            {"label": digit, "pixels": digits.data[i].astype(int).tolist()} for i in indexes
        ]
    Path(__file__).with_name("samples.json").write_text(json.dumps(samples) + "\n")


if __name__ == "__main__":
    main()
