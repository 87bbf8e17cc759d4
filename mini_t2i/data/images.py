"""Decode an image from bytes or a file, and make it an RGB square of a given side.

    open_image(bytes | path)  -> PIL image, fully decoded, or ImageError saying why not
    to_rgb_square(image, 64)  -> RGB, EXIF orientation applied, center-cropped, 64 x 64

Every loader in `mini_t2i.data.sources` goes through these two functions, so that the
same picture gives the same pixels whatever format it was stored in.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# 8192 x 8192 = 64 Mpx (192 MB as RGB): above any photo a caption dataset holds, far
# below what a crafted file can claim in its header (a 20000 x 20000 PNG compresses to
# ~60 kB and would take 1.2 GB to decode).
MAX_PIXELS = 8192 * 8192

# Downscale in two steps (an integer box-filter `reduce`, then bicubic) when the image is
# more than 3x the target: as sharp as plain bicubic, several times faster on big photos.
REDUCING_GAP = 3.0

# Pillow hands EPS to Ghostscript, an external interpreter: never on data scraped from the web.
REFUSED_FORMATS = ("EPS",)


class ImageError(ValueError):
    """An image that cannot be used; `reason` is a short key (e.g. "truncated") for stats."""

    def __init__(self, message: str, reason: str = "unreadable image"):
        super().__init__(message)
        self.reason = reason


def _describe(source: bytes | str | Path) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{len(source)} bytes>"


def open_image(
    source: bytes | bytearray | memoryview | str | Path,
    *,
    max_pixels: int = MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode an image file (given as its bytes or its path) and return it fully loaded.

    Checks the size claimed by the header before decoding anything, so a decompression
    bomb costs nothing. Raises `ImageError` (a `ValueError`) for data that is not an image,
    is truncated or corrupt, or is larger than `max_pixels`; `FileNotFoundError` for a
    missing path. `draft_size` lets JPEG decode at a reduced scale (1/2, 1/4, 1/8) while
    keeping the short side at least `draft_size`: much faster for big photos headed for
    a small square. Animated images are returned at their first frame.
    """
    name = _describe(source)
    if isinstance(source, (str, Path)):
        # Read the whole file so no handle stays open inside the lazy PIL image.
        data = Path(source).read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise ImageError(f"{name}: empty file, not an image; re-download or remove it", "not an image")

    try:
        # Pillow has its own bomb check (a warning above 89 Mpx, an error above 179 Mpx);
        # ours below is the one that applies, so silence the warning and translate the error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image Pillow can read (starts with {data[:16]!r}); "
            "check that the file/column really holds encoded image data (JPEG, PNG, WebP, ...)",
            "not an image",
        ) from None
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{name}: {err}; this guards against decompression bombs, the limit here is "
            f"{max_pixels:,} pixels; downscale the image first",
            "too large",
        ) from None
    except Exception as err:  # Pillow raises a zoo of types on odd headers
        raise _decode_error(name, err) from None

    if image.format in REFUSED_FORMATS:
        message = f"{name}: {image.format} files are refused (decoding runs an external program); convert it to PNG"
        raise ImageError(message, "refused format")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} ({MAX_PIXELS:,} = 8192x8192 by default), which guards against "
            "decompression bombs; downscale the image first or pass a larger max_pixels",
            "too large",
        )
    if width == 0 or height == 0:
        raise ImageError(f"{name}: the image is {width}x{height}, it has no pixels", "corrupt")
    if draft_size and image.format in ("JPEG", "MPO"):  # MPO: phone JPEGs with a preview frame
        image.draft(None, (draft_size, draft_size))

    try:
        image.load()  # decodes the first frame of animated images
    except Exception as err:
        raise _decode_error(name, err) from None
    return image


def _decode_error(name: str, err: Exception) -> ImageError:
    message = str(err) or type(err).__name__
    if "truncat" in message.lower() or isinstance(err, EOFError):
        return ImageError(f"{name}: truncated image ({message}); the file was cut short, re-download it",
                          "truncated")
    return ImageError(f"{name}: corrupt image data ({message}); re-download or remove it", "corrupt")


def _scaled_to_uint8(image: Image.Image) -> Image.Image:
    """Map a 16/32-bit integer or float grayscale image to 8-bit "L"."""
    import numpy as np

    values = np.asarray(image)
    if image.mode == "F":
        values = values.astype(np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        # Float images hold either [0, 1] intensities or [0, 255] ones; values beyond are clipped.
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # uint8 2-D -> "L"
    values = values.astype(np.int64)
    if image.mode.startswith("I;16") or (values.size and values.max() > 255):
        # 16-bit data: 65535 / 257 = 255 exactly, so white stays white and black stays black.
        # ("I" images from 16-bit files read as "I" by some Pillow versions take this branch;
        # an "I" image whose values all fit in 8 bits is taken as 8-bit data.)
        values = np.clip(values, 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # uint8 2-D -> "L"


def _rgb_on_white(image: Image.Image) -> Image.Image:
    """Composite an image with an alpha channel over white: transparent areas become white."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB (transparency over white, 16-bit scaled to 8-bit)."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # "transparency" in info: palette or tRNS-keyed L/RGB images (GIF, PNG).
        if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
            return _scaled_to_uint8(image).convert("RGB")  # key colour ignored: rare, 16-bit
        return _rgb_on_white(image)
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _scaled_to_uint8(image).convert("RGB")
    try:
        # L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's own converters.
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageError(f"cannot convert an image of mode {mode!r} to RGB ({err})", "unsupported mode") from None


def to_rgb_square(image: Image.Image, size: int) -> Image.Image:
    """Return `image` as an RGB `size` x `size` image: upright, center-cropped, resized.

    EXIF orientation is applied first (phone photos are stored sideways), then the mode
    is made RGB (`to_rgb`), then the largest centered square is cropped and resized with
    bicubic filtering (reduce-then-resample for big downscales). Animated images use
    their first frame.
    """
    if size < 1:
        raise ValueError(f"size={size} must be >= 1")
    if getattr(image, "n_frames", 1) > 1 and image.tell() != 0:
        image.seek(0)
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        orientation = 1  # a broken EXIF block should not cost the image: keep it as stored
    upright = image
    if orientation in range(2, 9):  # 1 is upright; exif_transpose would copy for nothing
        try:
            upright = ImageOps.exif_transpose(image) or image
        except Exception:
            upright = image
    rgb = to_rgb(upright)
    width, height = rgb.size
    if (width, height) == (size, size):
        return rgb if rgb is not image else rgb.copy()
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    if (width, height) != (side, side):
        # Crop first rather than resize(box=...): the filter then cannot reach past the
        # square's edges and bleed cropped-away pixels into the border.
        rgb = rgb.crop((left, top, left + side, top + side))
    return rgb.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)
