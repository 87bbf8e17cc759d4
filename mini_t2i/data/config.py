"""Where image-caption data comes from: one config for every source format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class DataConfig:
    # shapes: render Shapes World on the fly; imagefolder: DIR with metadata.jsonl or a .txt
    # beside each image; webdataset: tar shards as img2dataset writes them; parquet / arrow:
    # files with an image and a text column; hf: any `datasets` dataset by name or local path.
    source: Literal["shapes", "imagefolder", "webdataset", "parquet", "arrow", "hf"] = "shapes"
    path: str = ""  # folder, file, glob of files/shards, or a dataset name/path for `hf`
    split: str = "train"  # Shapes World split, or the `datasets` split for `hf`
    image_size: int = 64  # images are made RGB, center-cropped and resized to this square side
    count: int = 1000  # shapes: how many scenes; other sources: the most examples to read (0 = all)
    seed: int = 0  # shapes: the split's seed
    # shapes: relative weights of the six tasks in the scenes drawn, e.g. {position: 3, colors: 0.5};
    # a task not named keeps weight 1. Empty: the split as it is (tasks cycle evenly).
    task_weights: dict[str, float] = field(default_factory=dict)
    image_column: str = "image"  # column mapping for parquet / arrow / hf
    text_column: str = "text"
    hf_config: Optional[str] = None  # the `datasets` config name, if the dataset has several
    streaming: bool = False  # hf: stream instead of downloading/preparing the whole dataset

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size={self.image_size} is too small; use 8 or more (64 is the default)")
        if self.count < 0:
            raise ValueError(f"count={self.count} must be >= 0 (0 reads every example)")
        if self.task_weights:
            from mini_t2i.shapes.spec import TASKS  # lazy: only a Shapes World config names tasks

            unknown = sorted(set(self.task_weights) - set(TASKS))
            if unknown or self.source != "shapes":
                raise ValueError(f"task_weights names {unknown or 'tasks'} but only source='shapes' with the tasks "
                                 f"{list(TASKS)} takes them")
            if any(w < 0 for w in self.task_weights.values()) or not any(
                    self.task_weights.get(t, 1.0) > 0 for t in TASKS):
                raise ValueError(f"task_weights={self.task_weights} must be >= 0 with at least one task above 0")
        if self.source != "shapes" and not self.path:
            raise ValueError(f"source={self.source!r} needs `path` (a folder, file, glob or dataset name)")


def check_image_sizes(model_image_size: int, **splits: "DataConfig") -> None:
    """Every split's image_size must be the model's (a trainer config's data and val_data)."""
    for name, data in splits.items():
        if data.image_size != model_image_size:
            raise ValueError(f"{name}.image_size={data.image_size} differs from model.image_size="
                             f"{model_image_size}; set both to the same value")
