"""c2srt: open-vocabulary multi-label image recognition (C2SRT and the MKT baseline) on open_clip.

Importing the package is cheap and quiet: the public classes below load torch and open_clip only
when first used.

Example:
    >>> from c2srt import Recognizer
    >>> rec = Recognizer.from_checkpoint("model.safetensors")  # doctest: +SKIP
    >>> pred = rec.predict(["photo.jpg"], ["dog", "frisbee", "grass"], top=3)[0]  # doctest: +SKIP
    >>> pred.labels, pred.present_labels  # ranked (label, score); those with P(present) >= 0.5  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .calibration import Calibrator, load_calibrator
    from .predict import Prediction, PredictOptions, Recognizer

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "Recognizer": ".predict",
    "Prediction": ".predict",
    "PredictOptions": ".predict",
    "Calibrator": ".calibration",
    "load_calibrator": ".calibration",
}

__all__ = ["Calibrator", "PredictOptions", "Prediction", "Recognizer", "__version__", "load_calibrator"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
