"""Image-caption pairs from the formats people have, behind one iterator.

    iter_examples(DataConfig(source="webdataset", path="shards/{00000..00009}.tar"))
        -> Example(image=<RGB 64x64>, text="a red circle ...", meta={...}), ...

Each source turns its storage into raw records (an undecoded image value, a caption, the
rest of the row); one loop then cleans the caption, decodes the image through
`mini_t2i.data.images` and counts whatever it skips. A bad example is skipped, never
fatal; a bad `path` or column name raises at once, naming what was expected.

    shapes       Shapes World scenes rendered on the fly (cfg.split, cfg.count, cfg.seed)
    imagefolder  DIR with metadata.jsonl/.csv ({"file_name", "text", ...}) or a .txt per image
    webdataset   tar shards as img2dataset writes them: KEY.jpg/.png/.webp + KEY.txt + KEY.json
    parquet      files with an image column (bytes, {"bytes", "path"} or a path) and a text column
    arrow        the same in Arrow IPC files or streams (`datasets`' cache files are streams)
    hf           any `datasets` dataset: a save_to_disk folder, a hub name or a local folder
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import logging
import os
import posixpath
import re
import tarfile
import zlib
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from PIL import Image

from mini_t2i.data.config import DataConfig
from mini_t2i.data.images import ImageError, open_image, to_rgb_square

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
CAPTION_EXTENSIONS = ("txt", "text", "caption")  # webdataset members holding the caption
METADATA_FILES = ("metadata.jsonl", "metadata.csv")  # the `datasets` imagefolder layout
ROWS_PER_SLICE = 64  # rows converted to Python at a time: bounds memory for image columns


@dataclass
class Example:
    """One image-caption pair: `image` is RGB, image_size x image_size; `text` is stripped."""

    image: Image.Image
    text: str
    meta: dict | None = None  # the rest of the record (metadata line, json member, other columns)


@dataclass
class LoadStats:
    """What a load saw: seen == yielded + skipped, and `reasons` counts every skip."""

    seen: int = 0
    yielded: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] += 1

    def __str__(self) -> str:
        why = ", ".join(f"{reason}: {n}" for reason, n in self.reasons.most_common())
        return f"seen {self.seen}, yielded {self.yielded}, skipped {self.skipped}" + (f" ({why})" if why else "")


@dataclass
class _Raw:
    """A record before cleaning: what a source found, undecoded."""

    image: Any  # bytes | str/Path | {"bytes", "path"} | PIL image | _PRESENT | None
    text: Any  # str | bytes | list of str | None
    meta: dict | None
    where: str  # for log messages: file, line or key
    base: Path | None = None  # folder that relative image paths start from
    error: str | None = None  # a skip reason the source found itself (e.g. "unreadable shard")


_PRESENT = object()  # captions-only reads: the image is there but was not read


# ---------------------------------------------------------------------------- the public API


def iter_examples(cfg: DataConfig, stats: LoadStats | None = None) -> Iterator[Example]:
    """Yield `Example`s from `cfg.source`, at most `cfg.count` of them (0 = all).

    Examples with an empty caption or an image that cannot be used are skipped and
    counted in `stats` (pass a `LoadStats` to read them). A missing `path`, a folder
    without data or a missing column raises here, before the first example.
    """
    records = _open_source(cfg, decode=True)
    return _records(records, cfg, stats if stats is not None else LoadStats(), decode=True)


def iter_captions(cfg: DataConfig, stats: LoadStats | None = None) -> Iterator[str]:
    """Yield the stripped captions of `cfg.source`, reading no image where the format allows.

    For training the text tokenizer. Parquet, arrow and `hf` read only the text column;
    webdataset and imagefolder skip image bytes; shapes still renders its scenes.
    A caption whose image is known to be missing is skipped, as `iter_examples` would.
    """
    records = _open_source(cfg, decode=False)
    return _records(records, cfg, stats if stats is not None else LoadStats(), decode=False)


def _records(records: Iterator[_Raw], cfg: DataConfig, stats: LoadStats, decode: bool) -> Iterator[Any]:
    """The one loop behind both iterators: clean, decode (if `decode`), count, cap."""
    yielded = 0
    with closing(records):  # closes tar files / readers when the caller stops early
        for raw in records:
            stats.seen += 1
            text = _clean_caption(raw.text)
            reason = raw.error or ("no caption" if not text else "no image" if raw.image is None else None)
            if reason is None and decode:
                try:
                    image = _decode(raw.image, raw.base, cfg.image_size)
                except ImageError as err:
                    reason = err.reason
                except FileNotFoundError:
                    reason = "missing image file"
                except Exception as err:  # noqa: BLE001 - one odd file must not end a long run
                    reason = "unreadable image"
                    logger.warning("skipped %s: %s: %s", raw.where, type(err).__name__, err)
            if reason is not None:
                stats.skip(reason)
                logger.debug("skipped %s: %s", raw.where, reason)
                continue
            stats.yielded += 1
            yielded += 1
            yield Example(image=image, text=text, meta=raw.meta) if decode else text
            if cfg.count and yielded >= cfg.count:
                return


def _clean_caption(value: Any) -> str:
    """A caption as a stripped str; "" when there is none (lists give their first caption)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8-sig", errors="replace")
    if isinstance(value, (list, tuple)):  # e.g. COCO-style several captions per image
        value = next((v for v in value if isinstance(v, str) and v.strip()), "")
    return value.strip() if isinstance(value, str) else ""


def _decode(value: Any, base: Path | None, size: int) -> Image.Image:
    """Turn any stored image value into an RGB size x size image."""
    if isinstance(value, Image.Image):
        return to_rgb_square(value, size)
    if isinstance(value, dict):  # {"bytes": ..., "path": ...} as `datasets` and img2dataset write it
        value = value.get("bytes") or value.get("path")
        if not value:
            raise ImageError("image struct has neither bytes nor path", "no image")
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        value = path if path.is_absolute() or base is None else base / path
    if not isinstance(value, (bytes, bytearray, memoryview, Path)):
        raise ImageError(f"unsupported image value of type {type(value).__name__}", "not an image")
    # JPEGs decode at 1/2..1/8 scale while staying at least twice the target: plenty for
    # the bicubic resize after, and several times faster for big photos.
    return to_rgb_square(open_image(value, draft_size=2 * size), size)


_READY = object()  # a reader yields this once its checks passed, before any record


def _open_source(cfg: DataConfig, decode: bool) -> Iterator[_Raw]:
    """The reader for cfg.source, run up to `_READY` so that a bad path raises here."""
    readers: dict[str, Callable[[DataConfig, bool], Iterator[Any]]] = dict(
        shapes=_read_shapes, imagefolder=_read_imagefolder, webdataset=_read_webdataset,
        parquet=_read_parquet, arrow=_read_arrow, hf=_read_hf,
    )
    if cfg.source not in readers:
        raise ValueError(f"source={cfg.source!r} is not one of {sorted(readers)}")
    records = readers[cfg.source](cfg, decode)
    first = next(records)
    assert first is _READY, f"the {cfg.source} reader must yield _READY first"
    return records


def _json_safe(value: Any) -> Any:
    """`value` with only JSON types (caches write Example.meta as JSON); blobs become None."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview, Image.Image)):
        return None  # another image or blob: too big for meta
    return str(value)  # dates, decimals, ...


# ---------------------------------------------------------------------------- finding files


def expand_braces(pattern: str) -> list[str]:
    """Expand webdataset brace notation: "a/{000..002}.tar" -> a/000.tar, a/001.tar, a/002.tar.

    Ranges keep the zero padding of their first bound; "{x,y}" lists work too; several
    braces expand as a product. Text without braces comes back unchanged.
    """
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail, body = pattern[: match.start()], pattern[match.end() :], match.group(1)
    numbers = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numbers:
        first, last = numbers.groups()
        items = [str(i).zfill(len(first)) for i in range(int(first), int(last) + 1)]
    elif "," in body:
        items = body.split(",")
    else:
        return [head + "{" + body + "}" + p for p in expand_braces(tail)]
    return [head + item + rest for item in items for rest in expand_braces(tail)]


def _walk_files(root: Path) -> list[Path]:
    """Every non-hidden file under `root`, recursively, in sorted (deterministic) order."""
    found = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(folder) / name for name in sorted(filenames) if not name.startswith("."))
    return found


def _find_files(path: str, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files from a path, a folder (searched recursively), a glob or brace notation."""
    files: list[Path] = []
    for pattern in expand_braces(path):
        if Path(pattern).is_dir():
            files.extend(f for f in _walk_files(Path(pattern)) if f.name.lower().endswith(suffixes))
        elif Path(pattern).is_file():
            files.append(Path(pattern))
        elif re.search(r"[*?[]", pattern):  # a glob (checked after literal names, which may hold "[")
            files.extend(sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file()))
        else:
            raise FileNotFoundError(f"{pattern}: no such file or folder (from path={path!r}); expected {what}")
    if not files:
        raise FileNotFoundError(f"path={path!r} holds no {what} (looked for names ending in {', '.join(suffixes)})")
    return files


# ---------------------------------------------------------------------------- sources
# Each reader checks its path and columns, yields _READY, then yields _Raw records.


def _read_shapes(cfg: DataConfig, decode: bool) -> Iterator[Any]:
    if cfg.count <= 0:
        raise ValueError("source='shapes' renders scenes on the fly: set count > 0 (how many scenes)")
    from mini_t2i.shapes.scenes import generate_split, generate_weighted  # lazy: Shapes World is its own stage

    yield _READY
    if cfg.task_weights:
        samples = generate_weighted(cfg.split, cfg.count, cfg.task_weights, seed=cfg.seed, size=cfg.image_size)
    else:
        samples = generate_split(cfg.split, cfg.count, seed=cfg.seed, size=cfg.image_size)
    for i, sample in enumerate(samples):
        yield _Raw(sample.image, sample.text, sample.meta, where=f"shapes/{cfg.split}/{i}")


def _read_imagefolder(cfg: DataConfig, decode: bool) -> Iterator[Any]:
    root = Path(cfg.path)
    if not root.is_dir():
        raise (NotADirectoryError if root.exists() else FileNotFoundError)(
            f"{root}: no such folder; imagefolder expects a folder of images"
        )
    files = _walk_files(root)
    metadata = [f for f in files if f.name in METADATA_FILES]
    images = [f for f in files if f.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS]
    if not metadata and not images:
        raise ValueError(
            f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no metadata.jsonl; imagefolder expects "
            'images with a metadata.jsonl ({"file_name": ..., "text": ...}) or a .txt caption beside each'
        )
    first = next((row for _, row in _metadata_rows(metadata[0]) if row), None) if metadata else None
    if first is not None and cfg.text_column not in first:
        raise ValueError(f"{metadata[0]}: no key {cfg.text_column!r} (set text_column); the keys are {list(first)}")
    yield _READY
    if not metadata:  # a caption file beside each image, same stem
        for image in images:
            caption_file = image.with_suffix(".txt")
            text = caption_file.read_text("utf-8-sig", errors="replace") if caption_file.is_file() else None
            meta = {"file_name": image.relative_to(root).as_posix()}
            yield _Raw(image if decode else _PRESENT, text, meta, where=str(image))
        return
    for meta_file in metadata:
        for lineno, row in _metadata_rows(meta_file):
            where = f"{meta_file}:{lineno}"
            if row is None or not row.get("file_name"):
                yield _Raw(None, None, None, where, error="bad metadata line")
                continue
            # file_name is relative to the metadata file's own folder, as in `datasets`.
            image = meta_file.parent / str(row["file_name"])
            if not decode and not image.is_file():
                yield _Raw(None, None, None, where, error="missing image file")
                continue
            meta = {k: v for k, v in row.items() if k != cfg.text_column}
            yield _Raw(image if decode else _PRESENT, row.get(cfg.text_column), meta, where)


def _metadata_rows(path: Path) -> Iterator[tuple[int, dict | None]]:
    """(line number, row) of a metadata.jsonl or .csv; row is None for an unparsable line."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        if path.suffix == ".csv":
            yield from enumerate(csv.DictReader(f), start=2)
            return
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                yield lineno, row if isinstance(row, dict) else None


def _read_webdataset(cfg: DataConfig, decode: bool) -> Iterator[Any]:
    if re.match(r"^[a-z][a-z0-9+]*://", cfg.path) or cfg.path.startswith("pipe:"):
        raise ValueError(f"path={cfg.path!r}: only local shards are read; download them first")
    shards = _find_files(cfg.path, (".tar", ".tar.gz", ".tgz"), "webdataset tar shards")
    yield _READY
    for shard in shards:
        try:
            # "r|*": a forward-only stream, so a shard never has to fit in memory or be seeked.
            with tarfile.open(shard, mode="r|*") as tar:
                key, members = None, {}
                for member in tar:
                    folder, name = posixpath.split(member.name)
                    stem, dot, ext = name.partition(".")
                    if not member.isfile() or name.startswith(".") or not dot:  # e.g. macOS "._x.jpg"
                        continue
                    member_key = posixpath.join(folder, stem)
                    if member_key != key:  # a sample's files are contiguous in a shard
                        if key is not None:
                            yield _webdataset_sample(shard, key, members)
                        key, members = member_key, {}
                    ext = ext.lower()
                    if decode or ext not in IMAGE_EXTENSIONS:
                        members[ext] = tar.extractfile(member).read()
                    else:
                        members[ext] = _PRESENT  # captions only: note the image, skip its bytes
                if key is not None:
                    yield _webdataset_sample(shard, key, members)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            logger.warning("%s: unreadable tar shard (%s); skipping the rest of it", shard, err)
            yield _Raw(None, None, None, str(shard), error="unreadable shard")


def _webdataset_sample(shard: Path, key: str, members: dict[str, Any]) -> _Raw:
    image = next((members[ext] for ext in IMAGE_EXTENSIONS if ext in members), None)
    text = next((members[ext] for ext in CAPTION_EXTENSIONS if ext in members), None)
    meta: dict = {"__key__": key, "__url__": str(shard)}
    # The json member is a bonus: unreadable, the sample is still usable without it.
    with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
        extra = json.loads(members.get("json", b"{}"))
        meta.update(extra if isinstance(extra, dict) else {})
    return _Raw(image, text, meta, where=f"{shard}:{key}")


def _check_columns(columns: list[str], cfg: DataConfig, where: str, need_image: bool) -> None:
    wanted = [("text_column", cfg.text_column)] + ([("image_column", cfg.image_column)] if need_image else [])
    for setting, name in wanted:
        if name not in columns:
            raise ValueError(f"{where}: no column {name!r} (set {setting}); the columns are {columns}")


def _batch_records(batch: Any, cfg: DataConfig, path: Path, decode: bool) -> Iterator[_Raw]:
    """Rows of a pyarrow RecordBatch, converted to Python a slice at a time."""
    for start in range(0, batch.num_rows, ROWS_PER_SLICE):
        for row in batch.slice(start, ROWS_PER_SLICE).to_pylist():
            image = row.pop(cfg.image_column, None) if decode else _PRESENT
            text = row.pop(cfg.text_column, None)
            yield _Raw(image, text, _json_safe(row) or None, str(path), base=path.parent)


def _read_parquet(cfg: DataConfig, decode: bool) -> Iterator[Any]:
    import pyarrow.parquet as pq

    files = _find_files(cfg.path, (".parquet",), "parquet files")
    _check_columns(pq.read_schema(files[0]).names, cfg, str(files[0]), need_image=decode)
    yield _READY
    for path in files:
        with pq.ParquetFile(path) as parquet:
            _check_columns(parquet.schema_arrow.names, cfg, str(path), need_image=decode)
            columns = None if decode else [cfg.text_column]  # captions only: skip image pages
            for batch in parquet.iter_batches(batch_size=ROWS_PER_SLICE, columns=columns):
                yield from _batch_records(batch, cfg, path, decode)


def _arrow_reader(source: Any) -> Any:
    """An IPC file reader, or a stream reader when the file has no footer."""
    import pyarrow as pa

    try:
        return pa.ipc.open_file(source)
    except pa.ArrowInvalid:  # no file footer: the stream format (`datasets` cache files)
        source.seek(0)
        return pa.ipc.open_stream(source)


def _read_arrow(cfg: DataConfig, decode: bool) -> Iterator[Any]:
    import pyarrow as pa

    files = _find_files(cfg.path, (".arrow", ".feather", ".ipc"), "Arrow IPC files")
    with pa.memory_map(str(files[0])) as source:
        _check_columns(_arrow_reader(source).schema.names, cfg, str(files[0]), need_image=decode)
    yield _READY
    for path in files:
        # Memory-mapped: pages load on demand, so a file bigger than RAM is fine.
        with pa.memory_map(str(path)) as source:
            reader = _arrow_reader(source)
            _check_columns(reader.schema.names, cfg, str(path), need_image=decode)
            if isinstance(reader, pa.ipc.RecordBatchFileReader):
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                batches = iter(reader)
            for batch in batches:
                if not decode:
                    batch = batch.select([cfg.text_column])
                yield from _batch_records(batch, cfg, path, decode)


def _load_hf(cfg: DataConfig) -> Any:
    """A `datasets` Dataset or IterableDataset for cfg.path / cfg.split."""
    import datasets

    local = Path(cfg.path)
    if local.is_dir() and any((local / name).is_file() for name in ("dataset_dict.json", "state.json")):
        dataset = datasets.load_from_disk(str(local))  # a save_to_disk folder
        if isinstance(dataset, datasets.DatasetDict):
            if cfg.split not in dataset:
                raise ValueError(f"{local}: no split {cfg.split!r}; the splits are {list(dataset)}")
            dataset = dataset[cfg.split]
        return dataset.to_iterable_dataset() if cfg.streaming else dataset
    # A hub name or a local folder of data files; never trust_remote_code (no dataset scripts).
    return datasets.load_dataset(cfg.path, cfg.hf_config, split=cfg.split, streaming=cfg.streaming)


def _read_hf(cfg: DataConfig, decode: bool) -> Iterator[Any]:
    import datasets

    dataset = _load_hf(cfg)
    if dataset.column_names is not None:  # None for some streamed datasets until read
        _check_columns(list(dataset.column_names), cfg, cfg.path, need_image=decode)
    if not decode:
        dataset = dataset.select_columns([cfg.text_column])
    elif isinstance((dataset.features or {}).get(cfg.image_column), datasets.Image):
        # Decode ourselves: `datasets` would raise mid-iteration on one corrupt image,
        # and would skip our bomb guard and error messages.
        dataset = dataset.cast_column(cfg.image_column, datasets.Image(decode=False))
    base = Path(cfg.path) if Path(cfg.path).is_dir() else None
    yield _READY
    for i, row in enumerate(dataset):
        row = dict(row)
        image = row.pop(cfg.image_column, None) if decode else _PRESENT
        text = row.pop(cfg.text_column, None)
        yield _Raw(image, text, _json_safe(row) or None, where=f"{cfg.path}[{cfg.split}][{i}]", base=base)
