"""iter_examples / iter_captions: every format gives the same pairs for the same data.

One small set of PIL-drawn images (some PNG, some JPEG, different sizes) is written in
every layout; one image is corrupt and one caption is missing, and every format must
skip and count both.
"""

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mini_t2i.data.config import DataConfig
from mini_t2i.data.images import open_image, to_rgb_square
from mini_t2i.data.sources import LoadStats, expand_braces, iter_captions, iter_examples

SIZE = 16
NUM = 24
CORRUPT, UNCAPTIONED = 5, 9
COLORS = ["red", "green", "blue", "orange", "purple", "teal"]


def make_items():
    """[(name, image bytes, caption)]: the ground truth all layouts are built from."""
    items = []
    for i in range(NUM):
        image = Image.new("RGB", (24 + 4 * (i % 5), 20 + 6 * (i % 3)), "white")
        draw = ImageDraw.Draw(image)
        color = COLORS[i % len(COLORS)]
        if i % 2:
            draw.ellipse((3, 3, 17, 15), fill=color)
        else:
            draw.rectangle((4, 2, 14 + i % 7, 16), fill=color)
        is_jpeg = i % 3 == 0
        buffer = io.BytesIO()
        image.save(buffer, "JPEG" if is_jpeg else "PNG")
        data = buffer.getvalue()
        if i == CORRUPT:
            data = data[: len(data) // 3]
        caption = "" if i == UNCAPTIONED else f"  a {color} {'circle' if i % 2 else 'square'} no. {i}\n"
        items.append((f"{i:03d}.{'jpg' if is_jpeg else 'png'}", data, caption))
    return items


ITEMS = make_items()
EXPECTED = [
    (to_rgb_square(open_image(data), SIZE).tobytes(), caption.strip())
    for i, (_, data, caption) in enumerate(ITEMS)
    if i not in (CORRUPT, UNCAPTIONED)
]
EXPECTED_CAPTIONS = [caption.strip() for _, _, caption in ITEMS if caption.strip()]
SKIPS = Counter({"truncated": 1, "no caption": 1})


def write_imagefolder_metadata(root: Path) -> Path:
    (root / "part0").mkdir(parents=True)
    with open(root / "metadata.jsonl", "w") as f:
        for i, (name, data, caption) in enumerate(ITEMS):
            (root / "part0" / name).write_bytes(data)
            f.write(json.dumps({"file_name": f"part0/{name}", "text": caption, "meta": {"index": i}}) + "\n")
    return root


def write_imagefolder_txt(root: Path) -> Path:
    for i, (name, data, caption) in enumerate(ITEMS):
        folder = root / ("a" if i < NUM // 2 else "b")  # recursive, sorted walk
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        if caption:  # the uncaptioned image has no .txt at all
            (folder / name).with_suffix(".txt").write_text(caption)
    return root


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(root: Path) -> Path:
    root.mkdir(parents=True)
    for shard in range(2):
        with tarfile.open(root / f"{shard:05d}.tar", "w") as tar:
            for i in range(shard * NUM // 2, (shard + 1) * NUM // 2):
                name, data, caption = ITEMS[i]
                key = f"{i:09d}"
                add_member(tar, f"{key}.{name.split('.')[1]}", data)
                if caption:
                    add_member(tar, f"{key}.txt", caption.encode())
                add_member(tar, f"{key}.json", json.dumps({"key": key, "status": "success"}).encode())
            if shard == 1:  # a caption without its image: skipped as "no image"
                add_member(tar, "999999999.txt", b"an orphan caption")
    return root


def table(image_kind: str, root: Path):
    import pyarrow as pa

    if image_kind == "bytes":
        images = [data for _, data, _ in ITEMS]
    elif image_kind == "struct":
        images = [{"bytes": data, "path": name} for name, data, _ in ITEMS]
    else:  # relative paths, resolved against the table file's folder
        (root / "img").mkdir(parents=True, exist_ok=True)
        for name, data, _ in ITEMS:
            (root / "img" / name).write_bytes(data)
        images = [f"img/{name}" for name, _, _ in ITEMS]
    captions = [caption or None for _, _, caption in ITEMS]
    return pa.table({"jpg": images, "caption": captions, "index": list(range(NUM))})


def write_parquet(root: Path, image_kind: str) -> Path:
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    whole = table(image_kind, root)
    pq.write_table(whole.slice(0, 10), root / "part-0.parquet", row_group_size=4)
    pq.write_table(whole.slice(10), root / "part-1.parquet", row_group_size=4)
    return root


def write_arrow(root: Path, kind: str) -> Path:
    import pyarrow as pa

    root.mkdir(parents=True)
    whole = table("struct", root)
    path = root / "data.arrow"
    opener = pa.ipc.new_file if kind == "file" else pa.ipc.new_stream
    with pa.OSFile(str(path), "wb") as sink, opener(sink, whole.schema) as writer:
        for batch in whole.to_batches(max_chunksize=7):
            writer.write_batch(batch)
    return path


def hf_dataset():
    import datasets

    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    rows = {"image": [{"bytes": data, "path": None} for _, data, _ in ITEMS], "text": [c for _, _, c in ITEMS]}
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_imagefolder_metadata(root / "folder_meta")
    write_imagefolder_txt(root / "folder_txt")
    write_webdataset(root / "wds")
    write_parquet(root / "parquet_bytes", "bytes")
    write_parquet(root / "parquet_struct", "struct")
    write_parquet(root / "parquet_path", "path")
    write_arrow(root / "arrow_file", "file")
    write_arrow(root / "arrow_stream", "stream")
    return root


@pytest.fixture
def offline_hf(monkeypatch, tmp_path):
    """No network, and `datasets`' cache in tmp_path (its config reads env vars at import)."""
    import datasets

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    return tmp_path


def load(cfg: DataConfig, extra_skips: Counter = Counter()):
    stats = LoadStats()
    pairs = [(e.image.tobytes(), e.text) for e in iter_examples(cfg, stats)]
    for example in iter_examples(DataConfig(**{**cfg.__dict__, "count": 2})):
        assert example.image.mode == "RGB" and example.image.size == (SIZE, SIZE)
    assert stats.reasons == SKIPS + extra_skips, stats
    assert stats.seen == stats.yielded + stats.skipped and stats.yielded == len(pairs)
    return pairs


FILE_FORMATS = [
    ("imagefolder", "folder_meta", {}),
    ("imagefolder", "folder_txt", {}),
    ("webdataset", "wds", {}),
    ("parquet", "parquet_bytes", {"image_column": "jpg", "text_column": "caption"}),
    ("parquet", "parquet_struct", {"image_column": "jpg", "text_column": "caption"}),
    ("parquet", "parquet_path", {"image_column": "jpg", "text_column": "caption"}),
    ("arrow", "arrow_file", {"image_column": "jpg", "text_column": "caption"}),
    ("arrow", "arrow_stream", {"image_column": "jpg", "text_column": "caption"}),
]


@pytest.mark.parametrize("source,folder,columns", FILE_FORMATS, ids=[f[1] for f in FILE_FORMATS])
def test_file_formats_give_identical_pairs(data, source, folder, columns):
    cfg = DataConfig(source=source, path=str(data / folder), image_size=SIZE, count=0, **columns)
    extra = Counter({"no image": 1}) if source == "webdataset" else Counter()
    assert load(cfg, extra) == EXPECTED
    captions_stats = LoadStats()
    assert list(iter_captions(cfg, captions_stats)) == EXPECTED_CAPTIONS
    assert captions_stats.reasons == Counter({"no caption": 1}) + extra


def test_meta_keeps_the_rest_of_the_record(data):
    cfg = DataConfig(source="imagefolder", path=str(data / "folder_meta"), image_size=SIZE, count=1)
    assert next(iter_examples(cfg)).meta == {"file_name": "part0/000.jpg", "meta": {"index": 0}}
    cfg = DataConfig(source="webdataset", path=str(data / "wds"), image_size=SIZE, count=1)
    assert next(iter_examples(cfg)).meta["key"] == "000000000"
    cfg = DataConfig(source="parquet", path=str(data / "parquet_bytes"), image_size=SIZE, count=1,
                     image_column="jpg", text_column="caption")
    assert next(iter_examples(cfg)).meta == {"index": 0}


def test_webdataset_path_forms_and_a_broken_shard(data, tmp_path):
    wds = data / "wds"
    half = EXPECTED[: len([i for i in range(NUM // 2) if i not in (CORRUPT, UNCAPTIONED)])]
    for path in (wds / "00000.tar", wds / "0000[0].tar", wds / "{00000..00000}.tar"):
        assert load(DataConfig(source="webdataset", path=str(path), image_size=SIZE, count=0)) == half
    both = DataConfig(source="webdataset", path=str(wds / "{00000..00001}.tar"), image_size=SIZE, count=0)
    assert load(both, Counter({"no image": 1})) == EXPECTED
    assert expand_braces("s/{8..10}-{a,b}.tar") == ["s/8-a.tar", "s/8-b.tar", "s/9-a.tar", "s/9-b.tar",
                                                    "s/10-a.tar", "s/10-b.tar"]
    assert expand_braces("{00009..00010}") == ["00009", "00010"]
    # A shard cut short: what was read counts, the rest is one "unreadable shard", then on.
    raw = (wds / "00000.tar").read_bytes()
    (tmp_path / "00000.tar").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "00001.tar").write_bytes((wds / "00001.tar").read_bytes())
    stats = LoadStats()
    pairs = [(e.image.tobytes(), e.text) for e in iter_examples(DataConfig(
        source="webdataset", path=str(tmp_path), image_size=SIZE, count=0), stats)]
    assert stats.reasons["unreadable shard"] == 1
    assert pairs[-len(EXPECTED) + len(half):] == EXPECTED[len(half):] and len(pairs) < len(EXPECTED)


def test_hf_save_to_disk_and_load_dataset(data, offline_hf):
    import datasets

    ds = hf_dataset()
    ds.save_to_disk(str(offline_hf / "single"))
    datasets.DatasetDict({"train": ds.select(range(4)), "test": ds}).save_to_disk(str(offline_hf / "dict"))
    ds.to_parquet(str(offline_hf / "pq" / "train-0.parquet"))
    configs = [
        DataConfig(source="hf", path=str(offline_hf / "single"), image_size=SIZE, count=0),
        DataConfig(source="hf", path=str(offline_hf / "dict"), split="test", image_size=SIZE, count=0),
        DataConfig(source="hf", path=str(offline_hf / "single"), image_size=SIZE, count=0, streaming=True),
        DataConfig(source="hf", path=str(offline_hf / "pq"), image_size=SIZE, count=0),
        DataConfig(source="hf", path=str(offline_hf / "pq"), image_size=SIZE, count=0, streaming=True),
    ]
    # `datasets`' own .arrow files (Arrow streams, {"bytes", "path"} structs) read as plain arrow too.
    configs.append(DataConfig(source="arrow", path=str(offline_hf / "single"), image_size=SIZE, count=0))
    for cfg in configs:
        assert load(cfg) == EXPECTED, cfg
        assert list(iter_captions(cfg)) == EXPECTED_CAPTIONS, cfg
    from mini_t2i.data.sources import _load_hf

    assert isinstance(_load_hf(configs[4]), datasets.IterableDataset)  # really streams
    with pytest.raises(ValueError, match="no split 'validation'"):
        iter_examples(DataConfig(source="hf", path=str(offline_hf / "dict"), split="validation"))
    with pytest.raises(ValueError, match="no column 'caption'"):
        iter_examples(DataConfig(source="hf", path=str(offline_hf / "single"), text_column="caption"))


def test_count_caps_and_stops_early(data):
    for source, folder, columns in FILE_FORMATS[::2]:
        cfg = DataConfig(source=source, path=str(data / folder), image_size=SIZE, count=7, **columns)
        stats = LoadStats()
        pairs = [(e.image.tobytes(), e.text) for e in iter_examples(cfg, stats)]
        assert pairs == EXPECTED[:7] and stats.yielded == 7
        assert list(iter_captions(cfg)) == EXPECTED_CAPTIONS[:7]


def test_shapes_source():
    cfg = DataConfig(source="shapes", split="train", count=3, image_size=32, seed=1)
    examples = list(iter_examples(cfg))
    assert len(examples) == 3
    assert all(e.image.mode == "RGB" and e.image.size == (32, 32) and e.text == e.text.strip() for e in examples)
    assert list(iter_captions(cfg)) == [e.text for e in examples]
    with pytest.raises(ValueError, match="count > 0"):
        iter_examples(DataConfig(source="shapes", count=0))


def test_shapes_task_weights():
    cfg = DataConfig(source="shapes", split="train", count=12, image_size=32, seed=1,
                     task_weights={"position": 1, "single": 0, "two": 0, "counting": 0, "colors": 0, "color_attr": 0})
    assert {ex.meta["task"] for ex in iter_examples(cfg)} == {"position"}
    with pytest.raises(ValueError, match="task_weights"):
        DataConfig(source="shapes", task_weights={"positions": 2})  # a misspelt task
    with pytest.raises(ValueError, match="at least one task"):
        DataConfig(source="shapes", task_weights={t: 0 for t in
                                                  ("single", "two", "counting", "colors", "position", "color_attr")})


def test_bad_paths_and_columns_raise_at_once(data, tmp_path):
    missing = str(tmp_path / "missing")
    for source in ("imagefolder", "webdataset", "parquet", "arrow"):
        with pytest.raises(FileNotFoundError, match="missing"):
            iter_examples(DataConfig(source=source, path=missing))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        iter_examples(DataConfig(source="imagefolder", path=str(tmp_path / "empty")))
    with pytest.raises(FileNotFoundError, match="holds no webdataset tar shards"):
        iter_examples(DataConfig(source="webdataset", path=str(tmp_path / "empty")))
    with pytest.raises(FileNotFoundError, match="no such file"):
        iter_examples(DataConfig(source="webdataset", path=str(data / "wds" / "{00000..00002}.tar")))
    with pytest.raises(ValueError, match=r"no column 'image'.*image_column.*\['jpg', 'caption', 'index'\]"):
        iter_examples(DataConfig(source="parquet", path=str(data / "parquet_bytes"), text_column="caption"))
    with pytest.raises(ValueError, match="no key 'caption'.*'file_name', 'text', 'meta'"):
        iter_examples(DataConfig(source="imagefolder", path=str(data / "folder_meta"), text_column="caption"))
    with pytest.raises(ValueError, match="no column 'text'"):
        iter_examples(DataConfig(source="arrow", path=str(data / "arrow_file"), image_column="jpg"))


def test_imagefolder_bad_lines_and_missing_files_are_counted(tmp_path):
    name, data, caption = ITEMS[0]
    (tmp_path / name).write_bytes(data)
    lines = [json.dumps({"file_name": name, "text": caption}), "{not json", json.dumps({"text": "no file name"}),
             json.dumps({"file_name": "gone.png", "text": "its file is missing"})]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n\n")
    cfg = DataConfig(source="imagefolder", path=str(tmp_path), image_size=SIZE, count=0)
    stats = LoadStats()
    assert [(e.image.tobytes(), e.text) for e in iter_examples(cfg, stats)] == EXPECTED[:1]
    assert stats.reasons == Counter({"bad metadata line": 2, "missing image file": 1}) and stats.seen == 4
    stats = LoadStats()
    assert list(iter_captions(cfg, stats)) == EXPECTED_CAPTIONS[:1]
    assert stats.reasons == Counter({"bad metadata line": 2, "missing image file": 1})
