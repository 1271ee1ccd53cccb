"""Draw examples/ocr/sample.png: a small scanned-looking page of English text.

Run once with any Python that has Pillow (the OCR model's own environment has it):

    python examples/ocr/make_sample.py

The lines are in EXPECTED_LINES, which the tests compare with what the model reads.
The noise is seeded, so the picture is the same on every run.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

EXPECTED_LINES = (
    "INVOICE 2024-117",
    "Deliver to: Ada Lovelace, 12 Analytical Street",
    "Two brass gears and one steam engine",
    "Total due: 42.50 EUR by March 3",
)
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
)
SIZE = (900, 300)


def main() -> None:
    font = ImageFont.truetype(next(f for f in FONT_CANDIDATES if Path(f).is_file()), 30)
    page = Image.new("L", SIZE, color=245)
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(EXPECTED_LINES):
        draw.text((40, 30 + i * 62), line, fill=25, font=font)
    page = page.rotate(0.6, resample=Image.Resampling.BICUBIC, fillcolor=245)
    _add_noise(page, random.Random(7))
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    page.save(Path(__file__).with_name("sample.png"), optimize=True)


def _add_noise(page: Image.Image, rng: random.Random) -> None:
    pixels = page.load()
    assert pixels is not None
    width, height = page.size
    for _ in range(width * height // 60):  # speckles, like dust on a scanner glass
        x, y = rng.randrange(width), rng.randrange(height)
        pixels[x, y] = rng.choice((60, 120, 200))


if __name__ == "__main__":
    main()
