"""The `data` subcommands: fetch a package, turn it into an image folder.

    mini-t2i data emoji    --out data/emoji64 [--iconify-sets twemoji,fluent-emoji-flat,emojione]
    mini-t2i data iconify  --out data/iconify64 --sets twemoji,noto [--limit 500]
    mini-t2i data tuxpaint --out data/tuxpaint64 [--deb FILE | --stamps-dir DIR]

Each `build_*` function is the whole pipeline (fetch -> sources -> write_image_folder), so
tests and notebooks call it without the command line; `add_data_commands` only wires flags.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

RAW_DIR = "data/raw"


def _iconify_sources(sets: Sequence[str], raw_dir: str, size: int, limit: int, registry: str) -> list:
    from mini_t2i.data.builders.fetch import fetch_npm
    from mini_t2i.data.builders.iconify import ICONIFY_VERSIONS, iconify_source, package_name
    from mini_t2i.data.builders.raster import require_svg_support

    if sets:
        require_svg_support()  # fail before downloading anything, not after the first set
    sources = []
    for icon_set in sets:
        package = fetch_npm(package_name(icon_set), ICONIFY_VERSIONS.get(icon_set, "latest"), raw_dir, registry)
        sources.append(iconify_source(package, size=size, limit=limit))
    return sources


def build_emoji(out: str, raw_dir: str = RAW_DIR, size: int = 64, version: Optional[str] = None,
                skin_tones: bool = True, limit: int = 0, iconify_sets: Sequence[str] = (), iconify_limit: int = 0,
                val_fraction: Optional[float] = None, registry: Optional[str] = None) -> dict:
    """emoji-datasource-google, plus any iconify sets, written together to `out`; the build summary."""
    from mini_t2i.data.builders.emoji import EMOJI_PACKAGE, EMOJI_VERSION, emoji_source
    from mini_t2i.data.builders.fetch import NPM_REGISTRY, fetch_npm
    from mini_t2i.data.builders.folder import VAL_FRACTION, write_image_folder
    from mini_t2i.data.builders.raster import require_svg_support

    if iconify_sets:
        require_svg_support()  # before the 71 MB download, not after it
    registry = registry or NPM_REGISTRY
    sources = [emoji_source(fetch_npm(EMOJI_PACKAGE, version or EMOJI_VERSION, raw_dir, registry),
                            skin_tones=skin_tones, limit=limit)]
    sources += _iconify_sources(iconify_sets, raw_dir, size, iconify_limit, registry)
    return write_image_folder(out, sources, size, VAL_FRACTION if val_fraction is None else val_fraction)


def build_iconify(out: str, sets: Sequence[str], raw_dir: str = RAW_DIR, size: int = 64, limit: int = 0,
                  val_fraction: Optional[float] = None, registry: Optional[str] = None) -> dict:
    """The given @iconify-json sets written together to `out`; the build summary."""
    from mini_t2i.data.builders.fetch import NPM_REGISTRY
    from mini_t2i.data.builders.folder import VAL_FRACTION, write_image_folder

    if not sets:
        raise ValueError("no icon sets given; pass e.g. --sets twemoji,fluent-emoji-flat")
    sources = _iconify_sources(sets, raw_dir, size, limit, registry or NPM_REGISTRY)
    return write_image_folder(out, sources, size, VAL_FRACTION if val_fraction is None else val_fraction)


def build_tuxpaint(out: str, raw_dir: str = RAW_DIR, size: int = 64, limit: int = 0, deb: Optional[str] = None,
                   stamps_dir: Optional[str] = None, mirror: Optional[str] = None,
                   val_fraction: Optional[float] = None) -> dict:
    """Tux Paint's default stamps written to `out`; the build summary.

    `deb`: a tuxpaint-stamps-default .deb already on disk (checked against the pinned
    SHA256 when it is the pinned file's name); `stamps_dir`: an installed stamps folder
    (e.g. /usr/share/tuxpaint/stamps), used as it is.
    """
    from dataclasses import replace

    from mini_t2i.data.builders.fetch import DEBIAN_MIRROR, Package, fetch_deb
    from mini_t2i.data.builders.folder import VAL_FRACTION, write_image_folder
    from mini_t2i.data.builders.raster import require_svg_support
    from mini_t2i.data.builders.tuxpaint import TUXPAINT_RELEASE, keep_stamp_file, tuxpaint_source

    require_svg_support()  # 165 of the 950 stamps are SVG only
    release = TUXPAINT_RELEASE
    if stamps_dir is not None:
        package = Package(name=release.package, version="installed", root=Path(stamps_dir),
                          archive=Path(stamps_dir), license=release.license, homepage=release.homepage)
        source = tuxpaint_source(package, size=size, limit=limit, stamps_dir=Path(stamps_dir))
    else:
        if deb is not None and Path(deb).name != Path(release.filename).name:
            # Another version (e.g. from a newer Debian's `apt-get download`): no pinned checksum applies.
            release = replace(release, version=Path(deb).stem.split("_")[1] if "_" in Path(deb).stem else "local",
                              sha256="")
        package = fetch_deb(release, raw_dir, mirror or DEBIAN_MIRROR, keep=keep_stamp_file, local_deb=deb)
        source = tuxpaint_source(package, size=size, limit=limit)
    return write_image_folder(out, [source], size, VAL_FRACTION if val_fraction is None else val_fraction)


# ---------------------------------------------------------------------------- command line


def _sets(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip() and s.strip() != "none"]


def _report(summary: dict, out: str) -> None:
    for s in summary["sources"]:
        skipped = sum(s["skipped"].values())
        print(f"  {s['name']} {s['version']} ({s['license']}): {s['train']} train + {s['val']} val"
              + (f", {skipped} skipped {s['skipped']}" if skipped else ""))
    print(f"wrote {summary['train']} train + {summary['val']} val images at {summary['size']} px to {out} "
          f"in {summary['seconds']} s")


def _run(build, **kwargs) -> None:
    if not logging.getLogger().handlers:  # show download and progress lines, unless the caller set logging up
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = build(**kwargs)
    except ImportError as err:  # a missing optional dependency: one line naming the fix, as for other user errors
        raise ValueError(str(err)) from err
    _report(summary, kwargs["out"])


def cmd_data_emoji(args) -> None:
    _run(build_emoji, out=args.out, raw_dir=args.raw_dir, size=args.size, version=args.version,
         skin_tones=not args.no_skin_tones, limit=args.limit, iconify_sets=_sets(args.iconify_sets),
         iconify_limit=args.iconify_limit, val_fraction=args.val_fraction, registry=args.registry)


def cmd_data_iconify(args) -> None:
    _run(build_iconify, out=args.out, sets=_sets(args.sets), raw_dir=args.raw_dir, size=args.size, limit=args.limit,
         val_fraction=args.val_fraction, registry=args.registry)


def cmd_data_tuxpaint(args) -> None:
    _run(build_tuxpaint, out=args.out, raw_dir=args.raw_dir, size=args.size, limit=args.limit, deb=args.deb,
         stamps_dir=args.stamps_dir, mirror=args.mirror, val_fraction=args.val_fraction)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the image folder to write (OUT/train, OUT/val); replaced "
                        "if it is an earlier build")
    parser.add_argument("--raw-dir", default=RAW_DIR, help="download cache, reused by later runs (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="square side in pixels (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="share of captions (by hash, stable across runs) put in val (default: 0.03)")


def add_data_commands(subparsers) -> None:
    """Register `data emoji`, `data iconify` and `data tuxpaint` on an argparse subparsers object."""
    from mini_t2i.data.builders.iconify import DEFAULT_SETS

    data = subparsers.add_parser("data", help="build image folders from real image-caption sets (npm, Debian)")
    actions = data.add_subparsers(dest="dataset", required=True)

    emoji = actions.add_parser("emoji", help="emoji-datasource-google (+ iconify styles) -> OUT")
    _common(emoji)
    emoji.add_argument("--version", default=None, help="emoji-datasource-google version (default: the pinned one)")
    emoji.add_argument("--no-skin-tones", action="store_true", help="base emoji only, no skin-tone variations")
    emoji.add_argument("--limit", type=int, default=0, help="at most this many emoji-datasource images (0 = all)")
    emoji.add_argument("--iconify-sets", default=",".join(DEFAULT_SETS),
                       help="iconify sets written into the same folder, comma-separated, 'none' for none "
                       "(default: %(default)s)")
    emoji.add_argument("--iconify-limit", type=int, default=0, help="at most this many icons per set (0 = all)")
    emoji.add_argument("--registry", default=None, help="npm registry URL (default: https://registry.npmjs.org)")
    emoji.set_defaults(func=cmd_data_emoji)

    iconify = actions.add_parser("iconify", help="@iconify-json emoji sets -> OUT")
    _common(iconify)
    iconify.add_argument("--sets", default=",".join(DEFAULT_SETS),
                         help="comma-separated set names, e.g. twemoji,noto,openmoji (default: %(default)s)")
    iconify.add_argument("--limit", type=int, default=0, help="at most this many icons per set (0 = all)")
    iconify.add_argument("--registry", default=None, help="npm registry URL (default: https://registry.npmjs.org)")
    iconify.set_defaults(func=cmd_data_iconify)

    tux = actions.add_parser("tuxpaint", help="Tux Paint's default stamps (Debian tuxpaint-stamps-default) -> OUT")
    _common(tux)
    tux.add_argument("--limit", type=int, default=0, help="at most this many stamps (0 = all)")
    tux.add_argument("--deb", default=None, help="use this .deb (e.g. from `apt-get download "
                     "tuxpaint-stamps-default`) instead of downloading the pinned one")
    tux.add_argument("--stamps-dir", default=None, help="use an installed stamps folder, e.g. /usr/share/tuxpaint/stamps")
    tux.add_argument("--mirror", default=None, help="Debian mirror (default: http://deb.debian.org/debian)")
    tux.set_defaults(func=cmd_data_tuxpaint)
