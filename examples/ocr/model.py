"""OCR: the text of an image (a scanned document, a photo of a page).

RapidOCR 3 carries its ONNX models inside its wheel, so it runs offline. ``load()`` builds the
engine once per runner, with ONNX Runtime limited to one thread (the pool's runners give the
parallelism). Input: image bytes (PNG, JPEG, ...). Output:
``{"text": "all lines\\n...", "lines": [{"text": ..., "box": [[x, y] * 4], "score": 0.99}]}``.
"""

from io import BytesIO

from PIL import Image, UnidentifiedImageError
from rapidocr import RapidOCR

from modelbus_runner import PermanentError

THREADS = 1


def load():
    params = {
        "EngineConfig.onnxruntime.intra_op_num_threads": THREADS,
        "EngineConfig.onnxruntime.inter_op_num_threads": THREADS,
    }
    return RapidOCR(params=params)


def apply(input, state):
    image = _image(input)
    result = state(image)
    lines = []
    if result.boxes is not None:
        for box, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
            lines.append({"text": text, "box": box.tolist(), "score": round(float(score), 4)})
    return {"text": "\n".join(line["text"] for line in lines), "lines": lines}


def _image(data):
    if not isinstance(data, bytes):
        raise PermanentError("send the image itself as binary (PNG, JPEG, TIFF...)")
    try:
        image = Image.open(BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise PermanentError(f"not an image modelbus can read: {exc}") from exc
    return image.convert("RGB")
