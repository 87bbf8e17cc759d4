"""The real-data builders on tiny fake packages: no network, a few seconds.

A fake npm registry is a folder reached through file:// URLs (manifest at
REGISTRY/<name>/<version>, tarball beside it), so `fetch_npm` runs its real code path,
integrity check included. The fake .deb is assembled here: ar + data.tar.xz.
"""

import base64
import hashlib
import io
import json
import tarfile

import pytest
from PIL import Image

from mini_t2i.data.builders.commands import add_data_commands, build_emoji, build_iconify, build_tuxpaint
from mini_t2i.data.builders.fetch import DebRelease, IntegrityError, fetch_deb, fetch_npm, verify_npm_integrity
from mini_t2i.data.builders.folder import Item, Source, split_of, write_image_folder
from mini_t2i.data.builders.raster import has_svg_support, pad_to_square
from mini_t2i.data.builders.tuxpaint import english_caption, keep_stamp_file
from mini_t2i.data.config import DataConfig
from mini_t2i.data.sources import iter_examples

SIZE = 16


# ---------------------------------------------------------------------------- fakes


def png_bytes(size=(20, 20), color=(255, 0, 0, 255)) -> bytes:
    """An RGBA PNG: a coloured block in the middle of a transparent canvas."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (size[0] // 2, size[1] // 2), color), (size[0] // 4, size[1] // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def tar_bytes(files: dict, mode="w:gz", prefix="package/") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish(registry, name, version, files, integrity=None):
    """Put a package into the fake registry folder; returns the tarball's path."""
    folder = registry / name
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / f"{name.rsplit('/', 1)[-1]}-{version}.tgz"
    tarball.write_bytes(tar_bytes(files))
    sri = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    manifest = {"name": name, "version": version, "license": "MIT", "author": {"name": "Test Author"},
                "dist": {"tarball": tarball.as_uri(), "integrity": integrity or sri}}
    (folder / version).write_text(json.dumps(manifest))
    if version != "latest":
        (folder / "latest").write_text(json.dumps(manifest))
    return tarball


EMOJI = [
    {"name": "CAT FACE WITH WRY SMILE", "short_name": "smirk_cat", "unified": "1F63C", "image": "1f63c.png",
     "category": "Smileys & Emotion", "sort_order": 2, "has_img_google": True,
     "skin_variations": {}},
    {"name": "", "short_name": "flag_xx", "unified": "1F1FD", "image": "1f1fd.png", "category": "Flags",
     "sort_order": 3, "has_img_google": True},
    {"name": "WAVING HAND SIGN", "short_name": "wave", "unified": "1F44B", "image": "1f44b.png",
     "category": "People & Body", "sort_order": 1, "has_img_google": True,
     "skin_variations": {"1F3FD": {"unified": "1F44B-1F3FD", "image": "1f44b-1f3fd.png", "has_img_google": True}}},
]
EMOJI_CAPTIONS = {"waving hand sign", "cat face with wry smile", "flag xx", "waving hand sign, medium skin tone"}


@pytest.fixture
def registry(tmp_path):
    """A fake npm registry with emoji-datasource-google 16.0.0 and one iconify set."""
    root = tmp_path / "registry"
    files = {"emoji.json": json.dumps(EMOJI).encode(), "LICENSE": b"The MIT License (MIT)\nCopyright test\n"}
    for i, entry in enumerate(EMOJI):
        files[f"img/google/64/{entry['image']}"] = png_bytes((20, 12 + 4 * i), (200, 30 * i, 0, 255))
    files["img/google/64/1f44b-1f3fd.png"] = png_bytes((20, 20), (120, 80, 40, 255))
    publish(root, "emoji-datasource-google", "16.0.0", files)
    square = '<rect x="0" y="0" width="36" height="36" fill="#ff0000"/>'
    circle = '<circle cx="18" cy="18" r="12" fill="#0000ff"/>'
    icons = {"prefix": "testset", "width": 36, "height": 36,
             "icons": {"red-square": {"body": square}, "blue-circle": {"body": circle},
                       "old-name": {"body": circle, "hidden": True}},
             "aliases": {"red-box": {"parent": "red-square"}}}
    info = {"name": "Test Set", "author": {"name": "Someone", "url": "https://example.org"},
            "license": {"title": "CC BY 4.0", "spdx": "CC-BY-4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}}
    publish(root, "@iconify-json/testset", "1.0.0",
            {"icons.json": json.dumps(icons).encode(), "info.json": json.dumps(info).encode()})
    return root


def read_folder(path):
    """(caption -> example) of one split, through the project's own loader."""
    examples = list(iter_examples(DataConfig(source="imagefolder", path=str(path), count=0, image_size=SIZE)))
    return {e.text: e for e in examples}


# ---------------------------------------------------------------------------- emoji


def test_emoji_builder_writes_a_folder_the_loader_reads(tmp_path, registry):
    out, raw = tmp_path / "emoji", tmp_path / "raw"
    summary = build_emoji(str(out), str(raw), size=SIZE, registry=registry.as_uri(), val_fraction=0.5)
    train, val = read_folder(out / "train"), read_folder(out / "val")
    assert set(train) | set(val) == EMOJI_CAPTIONS
    assert not set(train) & set(val)
    assert summary["train"] + summary["val"] == 4
    for text, example in {**train, **val}.items():
        assert split_of(text, 0.5) == ("train" if text in train else "val")
        assert example.image.size == (SIZE, SIZE) and example.image.mode == "RGB"
        assert example.image.getpixel((0, 0)) == (255, 255, 255)  # transparency became white
        assert example.meta["meta"]["source"] == "emoji-datasource-google"
    assert "Test Author" in (out / "NOTICE.txt").read_text()
    assert (out / "LICENSES" / "emoji-datasource-google-LICENSE-data.txt").read_text().startswith("The MIT")
    assert not (tmp_path / "emoji.tmp").exists()

    # A second run needs no registry (everything is in raw/) and gives the same folder.
    first = {s: (out / s / "metadata.jsonl").read_text() for s in ("train", "val")}
    (registry / "emoji-datasource-google" / "16.0.0").unlink()
    build_emoji(str(out), str(raw), size=SIZE, registry=registry.as_uri(), val_fraction=0.5)
    assert {s: (out / s / "metadata.jsonl").read_text() for s in ("train", "val")} == first


def test_emoji_without_skin_tones_and_limit(tmp_path, registry):
    out = tmp_path / "emoji"
    build_emoji(str(out), str(tmp_path / "raw"), size=SIZE, skin_tones=False, limit=2, registry=registry.as_uri(),
                val_fraction=0.0)
    assert set(read_folder(out / "train")) == {"waving hand sign", "cat face with wry smile"}  # by sort_order


def test_split_is_stable_and_near_the_fraction():
    keys = [f"caption {i}" for i in range(4000)]
    val = [k for k in keys if split_of(k, 0.03) == "val"]
    assert 0.02 < len(val) / len(keys) < 0.04
    assert val == [k for k in keys if split_of(k, 0.03) == "val"]
    assert split_of("anything", 0.0) == "train" and split_of("anything", 1.0) == "val"


# ---------------------------------------------------------------------------- integrity


def test_bad_integrity_raises_and_leaves_nothing_in_the_cache(tmp_path):
    root = tmp_path / "registry"
    publish(root, "broken", "1.0.0", {"a.txt": b"a"}, integrity="sha512-" + base64.b64encode(b"x" * 64).decode())
    with pytest.raises(IntegrityError, match="checksum mismatch.*Delete"):
        fetch_npm("broken", "1.0.0", tmp_path / "raw", registry=root.as_uri())
    assert not list((tmp_path / "raw" / "npm").glob("*.tgz*"))


def test_a_damaged_cached_tarball_is_caught(tmp_path, registry):
    raw = tmp_path / "raw"
    package = fetch_npm("@iconify-json/testset", "1.0.0", raw, registry=registry.as_uri())
    assert (package.root / "icons.json").is_file() and package.version == "1.0.0"
    package.archive.write_bytes(package.archive.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match=str(package.archive.name)):
        fetch_npm("@iconify-json/testset", "1.0.0", raw, registry=registry.as_uri())


def test_shasum_is_checked_when_there_is_no_integrity(tmp_path):
    path = tmp_path / "f.tgz"
    path.write_bytes(b"data")
    assert verify_npm_integrity(path, shasum=hashlib.sha1(b"data").hexdigest()) == "sha1"
    with pytest.raises(IntegrityError):
        verify_npm_integrity(path, shasum="0" * 40)


def test_missing_registry_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="could not reach|HTTP|No such"):
        fetch_npm("nothing", "1.0.0", tmp_path / "raw", registry=(tmp_path / "none").as_uri())


# ---------------------------------------------------------------------------- iconify


@pytest.mark.skipif(not has_svg_support(), reason="cairosvg (pip install cairosvg) or the system libcairo is missing")
def test_iconify_builder_rasterises_visible_icons(tmp_path, registry):
    out = tmp_path / "icons"
    build_iconify(str(out), ["testset"], str(tmp_path / "raw"), size=SIZE, registry=registry.as_uri(),
                  val_fraction=0.0)
    examples = read_folder(out / "train")
    assert set(examples) == {"red square, testset style", "blue circle, testset style"}  # no alias, no hidden
    assert examples["red square, testset style"].image.getpixel((SIZE // 2, SIZE // 2)) == (255, 0, 0)
    circle = examples["blue circle, testset style"].image
    assert circle.getpixel((0, 0)) == (255, 255, 255) and circle.getpixel((SIZE // 2, SIZE // 2)) == (0, 0, 255)
    assert "CC-BY-4.0" in (out / "LICENSES" / "iconify-json_testset-LICENSE.txt").read_text()


# ---------------------------------------------------------------------------- tuxpaint


def ar_bytes(members: dict) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


STAMPS = "./usr/share/tuxpaint/stamps/"


def make_deb(tmp_path):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 20 10"><rect width="20" height="10" fill="#00ff00"/></svg>'
    files = {
        STAMPS + "animals/cat.png": png_bytes((30, 20), (10, 10, 10, 255)),
        STAMPS + "animals/cat.txt": "A black cat.\nes.utf8=Un gato negro.\npt_BR.utf8=Um gato.\n".encode(),
        STAMPS + "animals/cat_mirror.png": png_bytes(),  # no caption: left out
        STAMPS + "animals/cat_desc_es.ogg": b"OggS",
        STAMPS + "plants/tree.png": png_bytes((10, 30), (0, 120, 0, 255)),
        STAMPS + "plants/tree.txt": "ca@valencia.utf8=Un arbre.\nA green tree.\n".encode(),
        "./usr/share/doc/tuxpaint-stamps-default/copyright": b"Copyright: Bill Kendrick\nLicense: GPL-2\n",
        "../evil.txt": b"must not escape",
    }
    files[STAMPS + "things/box.svg"] = svg
    files[STAMPS + "things/box.txt"] = b"A wide green box.\n"
    deb = tmp_path / "tuxpaint-stamps-default_9.9-1_all.deb"
    deb.write_bytes(ar_bytes({"debian-binary": b"2.0\n", "control.tar.xz": tar_bytes({}, "w:xz", ""),
                              "data.tar.xz": tar_bytes(files, "w:xz", "")}))
    return deb


@pytest.mark.skipif(not has_svg_support(), reason="cairosvg (pip install cairosvg) or the system libcairo is missing")
def test_tuxpaint_builder_on_a_fake_deb(tmp_path):
    deb, out = make_deb(tmp_path), tmp_path / "tux"
    build_tuxpaint(str(out), str(tmp_path / "raw"), size=SIZE, deb=str(deb), val_fraction=0.0)
    examples = read_folder(out / "train")
    assert set(examples) == {"A black cat.", "A green tree.", "A wide green box."}
    assert examples["A wide green box."].image.getpixel((SIZE // 2, SIZE // 2)) == (0, 255, 0)
    tree = examples["A green tree."].image  # 10x30: padded with white left and right, not cropped
    assert tree.getpixel((0, SIZE // 2)) == (255, 255, 255)
    assert examples["A black cat."].meta["meta"]["stamp"] == "animals/cat"
    assert "Bill Kendrick" in (out / "LICENSES" / "tuxpaint-stamps-default-copyright.txt").read_text()
    assert not list(tmp_path.rglob("evil.txt"))
    unpacked = tmp_path / "raw" / "deb" / "tuxpaint-stamps-default_9.9-1"
    assert not list(unpacked.rglob("*.ogg"))  # sound files are not unpacked


def test_deb_checksum_mismatch(tmp_path):
    deb = make_deb(tmp_path)
    release = DebRelease("tuxpaint-stamps-default", "9.9-1", f"pool/{deb.name}", sha256="0" * 64)
    with pytest.raises(IntegrityError, match="sha256"):
        fetch_deb(release, tmp_path / "raw", keep=keep_stamp_file, local_deb=deb)


def test_english_caption_skips_translations():
    assert english_caption("\nzh_TW.utf8=x\nA dog.\nfr.utf8=Un chien.\n") == "A dog."
    assert english_caption("es.utf8=Solo.\n") == ""


# ---------------------------------------------------------------------------- folder and CLI


def test_folder_refuses_to_replace_a_foreign_folder_and_pads(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    source = Source("s", "1", "MIT", "a", "h", items=[Item(Image.new("RGB", (8, 4), "red"), "red")])
    with pytest.raises(ValueError, match="not a builder's output"):
        write_image_folder(tmp_path / "mine", [source], size=SIZE)
    padded = pad_to_square(Image.new("RGB", (40, 20), "red"), SIZE)
    assert padded.getpixel((SIZE // 2, 0)) == (255, 255, 255) and padded.getpixel((0, SIZE // 2)) == (255, 0, 0)


def test_a_bad_image_is_skipped_and_counted(tmp_path):
    def broken():
        raise ValueError("bad svg")

    items = [Item(Image.new("RGB", (4, 4), "blue"), "blue"), Item(broken, "broken")]
    summary = write_image_folder(tmp_path / "out", [Source("s", "1", "MIT", "a", "h", items=items)], size=SIZE,
                                 val_fraction=0.0)
    assert summary["train"] == 1 and summary["sources"][0]["skipped"] == {"skipped: ValueError": 1}

    def no_cairo():
        raise ImportError("rasterising SVG needs cairosvg")

    source = Source("s", "1", "MIT", "a", "h", items=[Item(no_cairo, "svg")])
    with pytest.raises(ImportError, match="cairosvg"):  # a missing dependency stops the build, not every item
        write_image_folder(tmp_path / "out2", [source], size=SIZE)
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out2.tmp").exists()


def test_data_commands_plug_into_a_parser():
    import argparse

    parser = argparse.ArgumentParser()
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "emoji", "--out", "x", "--iconify-sets", "none", "--size", "32"])
    assert args.size == 32 and args.raw_dir == "data/raw" and callable(args.func)
    args = parser.parse_args(["data", "iconify", "--out", "x", "--sets", "twemoji,noto", "--limit", "5"])
    assert args.sets == "twemoji,noto" and args.limit == 5
    args = parser.parse_args(["data", "tuxpaint", "--out", "x", "--deb", "f.deb"])
    assert args.deb == "f.deb"


def test_illustrator_style_entities_are_expanded_safely():
    from mini_t2i.data.builders.raster import expand_internal_entities

    svg = (b'<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd" [\n'
           b'  <!ENTITY ns_svg "http://www.w3.org/2000/svg">\n]>\n<svg xmlns="&ns_svg;"><rect/></svg>')
    assert expand_internal_entities(svg) == b'<?xml version="1.0"?>\n\n<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>'
    external = b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg>&x;</svg>'
    assert expand_internal_entities(external) == external  # left for defusedxml to refuse
