"""open_image / to_rgb_square: modes, orientation, crop, sizes and the guards."""

import io
import resource
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mini_t2i.data.images import MAX_PIXELS, ImageError, open_image, to_rgb, to_rgb_square


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def pixel(image: Image.Image, xy=(0, 0)) -> tuple:
    return to_rgb(image).getpixel(xy)


def test_alpha_modes_are_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    assert pixel(rgba) == (255, 255, 255)  # fully transparent -> white, not the hidden red
    assert pixel(rgba, (1, 1)) == (255, 0, 0)
    assert pixel(Image.new("RGBA", (2, 2), (0, 0, 0, 128)))[0] in (127, 128)  # half black on white
    assert pixel(Image.new("LA", (2, 2), (0, 0))) == (255, 255, 255)
    assert pixel(Image.new("LA", (2, 2), (30, 255))) == (30, 30, 30)


def test_palette_with_transparency_goes_white_through_a_file():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    for fmt in ("PNG", "GIF"):
        opened = open_image(encode(palette, fmt, transparency=0))
        assert opened.mode == "P" and "transparency" in opened.info
        assert pixel(opened) == (255, 255, 255), fmt
        assert pixel(opened, (2, 2)) == (0, 255, 0), fmt


def test_grayscale_16_bit_and_float_modes_scale_to_8_bit():
    assert pixel(Image.new("L", (2, 2), 77)) == (77, 77, 77)
    deep = Image.fromarray(np.array([[0, 32768], [65535, 257]], dtype=np.uint16))
    opened = open_image(encode(deep))  # through a real 16-bit PNG
    assert opened.mode.startswith("I")
    rgb = to_rgb(opened)
    assert [rgb.getpixel(xy)[0] for xy in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 128, 255, 1]
    wide = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert pixel(wide, (1, 0)) == (255, 255, 255) and pixel(wide) == (0, 0, 0)
    assert pixel(Image.fromarray(np.array([[0.5]], dtype=np.float32)))[0] in (127, 128)
    assert pixel(Image.fromarray(np.array([[200.0]], dtype=np.float32)))[0] == 200


def test_cmyk_and_bilevel():
    assert pixel(Image.new("CMYK", (2, 2), (0, 0, 0, 0))) == (255, 255, 255)
    assert pixel(Image.new("CMYK", (2, 2), (0, 255, 255, 0))) == (255, 0, 0)
    cmyk_jpeg = open_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    red = to_rgb_square(cmyk_jpeg, 8).getpixel((4, 4))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    bilevel = Image.new("1", (2, 2), 0)
    bilevel.putpixel((1, 1), 1)
    assert pixel(bilevel) == (0, 0, 0) and pixel(bilevel, (1, 1)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    # Stored 40x20: left half red, right half blue. Orientation 6 means "rotate 90 degrees
    # clockwise to display": upright it is 20x40 with red on top, blue below.
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = to_rgb_square(open_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes())), 16)
    top, bottom = upright.getpixel((8, 2)), upright.getpixel((8, 13))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    as_stored = to_rgb_square(open_image(encode(stored, "JPEG", quality=95)), 16)
    assert as_stored.getpixel((2, 8))[0] > 200 and as_stored.getpixel((13, 8))[2] > 200


def test_center_crop_and_sizes():
    wide = Image.new("RGB", (90, 30), (255, 0, 0))
    wide.paste((0, 255, 0), (30, 0, 60, 30))  # the centered 30x30 square is green
    for size in (8, 17, 30, 64):
        square = to_rgb_square(wide, size)
        assert square.mode == "RGB" and square.size == (size, size)
        colors = np.asarray(square).reshape(-1, 3)
        assert (colors[:, 1] > 200).all() and (colors[:, 0] < 40).all(), size
    tall = Image.new("L", (5, 7), 9)
    assert to_rgb_square(tall, 12).size == (12, 12)  # upscaling tiny images works too
    assert np.asarray(to_rgb_square(tall, 12)).max() == 9
    rgb = Image.new("RGB", (32, 32), (1, 2, 3))
    same = to_rgb_square(rgb, 32)
    assert same is not rgb and same.tobytes() == rgb.tobytes()


def test_animated_image_uses_first_frame():
    frames = [Image.new("RGB", (12, 12), color) for color in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    image = open_image(data)
    assert image.n_frames == 2
    image.seek(1)  # even if someone moved on, the first frame is used
    first = to_rgb_square(image, 8).getpixel((4, 4))
    assert first[0] > 200 and first[2] < 60


def test_jpeg_draft_decodes_smaller_but_close():
    yy, xx = np.mgrid[0:600, 0:800]
    photo = Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))
    data = encode(photo.resize((800, 600)), "JPEG", quality=90)
    drafted = open_image(data, draft_size=64)
    assert min(drafted.size) >= 64 and drafted.size[0] < 800
    a = np.asarray(to_rgb_square(drafted, 32), dtype=np.float32)
    b = np.asarray(to_rgb_square(open_image(data), 32), dtype=np.float32)
    assert np.abs(a - b).mean() < 12


def test_not_an_image_truncated_and_missing(tmp_path):
    with pytest.raises(ImageError) as info:
        open_image(b"this is plain text, not a picture")
    assert info.value.reason == "not an image" and "not an image" in str(info.value)
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    png = encode(Image.fromarray(noise))
    with pytest.raises(ImageError) as info:
        open_image(png[: len(png) // 2])
    assert info.value.reason == "truncated" and "re-download" in str(info.value)
    with pytest.raises(ImageError) as info:
        open_image(encode(Image.fromarray(noise), "JPEG")[:300])
    assert info.value.reason == "truncated"
    with pytest.raises(ImageError) as info:  # Pillow would hand this to Ghostscript
        open_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    assert info.value.reason == "refused format"
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "nope.png")
    path = tmp_path / "ok.png"
    path.write_bytes(png)
    assert open_image(path).size == (64, 64) and open_image(str(path)).size == (64, 64)


def bomb_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of width x height, built row block by row block."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = (b"\0" * (1 + (width + 7) // 8)) * 500  # filter byte + packed bits, 500 rows
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(rows) for _ in range(height // 500)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_without_decoding():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    huge = bomb_png(20000, 20000)  # 400 Mpx in ~60 kB: Pillow's own hard limit is hit
    assert len(huge) < 200_000
    with pytest.raises(ImageError) as info:
        open_image(huge)
    assert info.value.reason == "too large" and "decompression bomb" in str(info.value)
    big = bomb_png(9000, 9000)  # 81 Mpx: under Pillow's hard limit, over ours
    assert 9000 * 9000 > MAX_PIXELS
    with pytest.raises(ImageError) as info:
        open_image(big)
    assert info.value.reason == "too large" and f"{MAX_PIXELS:,}" in str(info.value)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100  # decoding either would take 80-400 MB
    with pytest.raises(ImageError, match="max_pixels"):
        open_image(encode(Image.new("RGB", (100, 100))), max_pixels=5000)
