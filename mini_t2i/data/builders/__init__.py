"""Builders that turn real image-caption sets from package registries into image folders.

    mini-t2i data emoji    --out data/emoji64 --iconify-sets twemoji,noto,fluent-emoji-flat
    mini-t2i data iconify  --out data/iconify64 --sets twemoji,noto --limit 500
    mini-t2i data tuxpaint --out data/tuxpaint64

Each set is a package on a registry the build machine can reach even when the web is
closed: npm (emoji-datasource-google, @iconify-json/*) and the Debian archive
(tuxpaint-stamps-default). The pieces:

    fetch.py     download a package once into --raw-dir, check its checksum, unpack it safely
    raster.py    SVG -> PNG (cairosvg) and "pad to a white square" for every image
    folder.py    Item / Source, the deterministic val split, OUT/{train,val}/metadata.jsonl,
                 OUT/LICENSES/ and OUT/NOTICE.txt, all written to OUT.tmp and renamed at the end
    emoji.py     emoji-datasource-google: 64 px PNGs captioned with their Unicode names
    iconify.py   @iconify-json emoji sets: SVG bodies captioned "<name>, <style> style"
    tuxpaint.py  Tux Paint stamps: photos and drawings with a one-sentence English caption
    commands.py  the `data` subcommands of the command line

The output is what `mini_t2i.data.sources` reads as source "imagefolder" (and `datasets`
as "imagefolder"). Nothing here runs at import time.
"""
