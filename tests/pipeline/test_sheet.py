"""The sample sheets: the grid of fixed prompts (issue 20's emoji sheet) and the row sheet."""

import numpy as np
import pytest

from mini_t2i.pipeline.sheet import EMOJI_24, PROMPT_SETS, main, prompt_grid


def test_emoji24_is_24_distinct_captions_across_kinds():
    captions = PROMPT_SETS["emoji24"]
    assert len(captions) == 24 == len(set(captions))
    assert {kind for kind, _ in EMOJI_24} == {"face", "animal", "food", "object", "symbol"}


def test_prompt_grid_places_each_prompts_top_pick_in_its_cell(tiny_pipeline_dir):
    prompts = ["a red circle", "two blue squares", "a green star"]
    sheet = prompt_grid(str(tiny_pipeline_dir), prompts, columns=2, num_images=2, num_candidates=2, scale=1)
    side = 32
    cell_w, cell_h = 2 * (side + 4) + 12, side + 16 + 10
    assert sheet.size == (2 * cell_w, 2 * cell_h)  # 3 prompts in 2 columns: 2 rows
    from mini_t2i.pipeline.pipeline import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(str(tiny_pipeline_dir))
    first = np.asarray(pipe(prompts, num_images=2, num_candidates=2, seed=0).images[2])  # prompt 1's top pick
    x, y = cell_w + 4, 4 + 16
    assert np.array_equal(np.asarray(sheet)[y:y + side, x:x + side], first)


def test_grid_without_a_model_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "s.png"), "--prompt-set", "emoji24"])
