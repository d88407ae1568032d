"""Reading images: one function, one exception, one list of suffixes.

Why: training, evaluation, `c2srt predict`, the web page and the data check all read image files,
and a broken file must get the same verdict everywhere. `open_rgb` decodes a file or raises
`ImageReadError` naming the file and the reason; each caller then decides whether that stops the
run (training without `data.skip_bad`), skips the image (predict, the page) or is reported (the
data check). Only Pillow is imported, so worker processes start fast.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

#: file suffixes treated as images when a folder is searched (lower case)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: most pixels (width x height) decoded. Pillow's own error threshold (twice its warning level of
#: 89.5 Mpx), checked here as well so a library that switched Pillow's check off cannot let a
#: decompression bomb (a small file that claims gigapixels) exhaust the memory.
MAX_PIXELS = 2 * 89_478_485


class ImageReadError(ValueError):
    """An image file could not be read; the message is `"<file>: <reason>"`.

    Attributes:
        path: the file.
        reason: what is wrong, in words ("empty file", "truncated or corrupt (...)", "too large ...").
    """

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None) -> None:
        if reason is None:  # rebuilt from its message alone (e.g. by a DataLoader worker): keep it
            path, reason = str(path), ""
            super().__init__(path)
        else:
            super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def has_image_suffix(name: str | os.PathLike[str]) -> bool:
    """Whether a file name ends in one of `IMAGE_SUFFIXES` (any case)."""
    return os.fspath(name).lower().endswith(IMAGE_SUFFIXES)


def _megapixels(n: int) -> str:
    return f"{n / 1e9:.1f} gigapixels" if n >= 1e9 else f"{n / 1e6:.0f} megapixels"


def _too_large(path: Path, pixels: int | None, detail: str = "") -> ImageReadError:
    size = f"{_megapixels(pixels)}{detail}; " if pixels else ""
    return ImageReadError(path, f"too large to decode safely ({size}the limit is {_megapixels(MAX_PIXELS)})")


def _read(path: str | os.PathLike[str], mode: str | None) -> Image.Image | None:
    """Decode the file; return it converted to `mode` (None: decode only, return nothing)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise ImageReadError(path, "no such file") from e
    except PermissionError as e:
        raise ImageReadError(path, "permission denied") from e
    except OSError as e:
        raise ImageReadError(path, f"cannot read the file ({e.strerror})") from e
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a folder, not an image")
    if st.st_size == 0:
        raise ImageReadError(path, "not a readable image (empty file)")
    try:
        img = Image.open(path)
    except PermissionError as e:
        raise ImageReadError(path, "permission denied") from e
    except Image.DecompressionBombError as e:  # raised on the header alone, before any pixel is read
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(path, int(found.group(1)) if found else None) from e
    except UnidentifiedImageError as e:
        raise ImageReadError(path, "not a readable image (not a known image format)") from e
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's plugins report bad headers with these
        raise ImageReadError(path, f"not a readable image ({type(e).__name__}: {e})") from e
    with img:
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise _too_large(path, w * h, f", {w} x {h} px")
        try:
            img.load()
        except Image.DecompressionBombError as e:
            raise _too_large(path, w * h) from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated data, bad chunks
            raise ImageReadError(path, f"not a readable image (truncated or corrupt: {e})") from e
        except MemoryError as e:
            raise ImageReadError(path, f"too large to decode in the memory available ({w} x {h} px)") from e
        # convert inside the `with`: closing the file also releases the decoded pixels
        return img.convert(mode) if mode is not None else None


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decode an image file into an RGB PIL image.

    Raises:
        ImageReadError: the file is missing, empty, a folder, not an image, truncated or corrupt,
            or too large (more than `MAX_PIXELS`); the message names the file and the reason.

    Example:
        >>> img = open_rgb("photo.jpg")  # doctest: +SKIP
    """
    img = _read(path, "RGB")
    assert img is not None  # a mode was asked for
    return img


def image_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be read as an image (the reason of `ImageReadError`), or None when it can.

    Decodes every pixel once, as training would. Used by the data check (in worker processes).
    """
    try:
        _read(path, None)
    except ImageReadError as e:
        return e.reason
    return None


def center_crop_box(width: int, height: int, *, resize: int | None = None, crop: int | None = None) -> tuple[float, float, float, float]:
    """(left, top, right, bottom), in the original image's pixels, of what the eval transform keeps.

    The eval transform resizes the short side to `resize` px, then centre-crops a `crop` px square;
    so it keeps a centred square of side `short side * crop / resize` of the original.

    Args:
        width, height: the original image size in px.
        resize: short side after resizing (default: `crop`, i.e. the whole short side is kept).
        crop: side of the centre crop in px (default: `resize`; with neither, the short side).

    Raises:
        ValueError: a crop larger than the resized short side, or a non-positive size.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    resize = resize or crop
    crop = crop or resize
    short = min(width, height)
    if resize is None or crop is None:
        side = float(short)
    else:
        if crop < 1 or resize < 1 or crop > resize:
            raise ValueError(f"centre crop of {crop} px does not fit a short side resized to {resize} px")
        side = short * crop / resize
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side
