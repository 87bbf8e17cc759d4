"""The shipped shapes64 draws what it drew when it was recorded: the same tokens for the same
seeds, the same ranking, the same pixels.

Recorded for the block-factorized shapes64 (issue 18, third schedule, 2026-12-02) on a 2-core AMD EPYC (Zen 5), 1 thread
(`python tests/pipeline/record_expected_slice.py 12`, which also measures the margin below).
Why exact token equality holds on every CPU kind: every token is drawn by inverse CDF
(float64) from fp32 logits; over all 2 x 4 x 256 draws below the uniform landed at least
1.6e-5 of probability mass from a CDF boundary (measured with the sampler's own CDF), while
fp32 logits that differ in reduction order move a probability by about 1e-6 (x p), 16x less
(seeds 0-3 of this model came within 7e-7, so the recording moved to seeds 12-15).
"""

import hashlib
import json

import numpy as np
import pytest

from mini_t2i.pipeline.pipeline import TextToImagePipeline
from mini_t2i.transformer.sampler import sample_image_tokens

PROMPT = "a red circle above a blue square"
SEED = 12  # candidates 12-15: the recording's smallest margin (below) is largest among the seeds tried
# guidance_scale: (the first 32 tokens (two token rows) of candidates SEED..SEED+3, sha256 of all 4 x 256)
EXPECTED_TOKENS = {
    1.0: ([[599, 325, 912, 912, 912, 85, 822, 350, 858, 443, 576, 302, 470, 76, 120, 319,
            294, 780, 780, 780, 85, 592, 965, 436, 419, 242, 242, 80, 320, 568, 654, 325],
           [599, 325, 912, 912, 490, 822, 1019, 608, 993, 344, 536, 247, 618, 912, 325, 319,
            294, 780, 780, 780, 780, 204, 898, 624, 80, 571, 921, 654, 618, 888, 85, 286],
           [599, 325, 912, 912, 912, 912, 912, 490, 912, 769, 669, 120, 718, 490, 490, 319,
            294, 780, 780, 780, 780, 780, 780, 85, 822, 1019, 752, 808, 681, 76, 718, 319],
           [471, 701, 377, 42, 731, 810, 20, 904, 355, 583, 152, 701, 701, 701, 701, 791,
            703, 63, 725, 664, 683, 1021, 77, 612, 380, 444, 577, 774, 753, 963, 963, 632]],
          "830f3f89e18dfb918695c5dbdc0a54feafca31eac5d982bc778ea7efbb22f5f1"),
    2.0: ([[599, 325, 912, 912, 912, 65, 752, 752, 568, 268, 76, 718, 912, 912, 325, 319,
            294, 780, 780, 780, 679, 247, 898, 624, 80, 424, 921, 654, 88, 888, 85, 286],
           [599, 325, 912, 912, 65, 752, 1019, 752, 681, 90, 718, 490, 912, 912, 325, 319,
            294, 780, 780, 679, 822, 436, 576, 242, 320, 917, 654, 494, 912, 679, 85, 286],
           [599, 325, 766, 376, 376, 127, 718, 481, 490, 912, 912, 912, 912, 912, 325, 319,
            294, 780, 766, 436, 898, 858, 536, 321, 970, 679, 780, 780, 780, 679, 85, 286],
           [471, 701, 63, 474, 577, 945, 48, 583, 292, 632, 63, 701, 701, 701, 701, 791,
            703, 63, 642, 996, 726, 616, 763, 395, 491, 859, 701, 963, 963, 963, 963, 632]],
          "20a26d67fb8bf8e4f2eb67b38e66fcf381a5c914c56895da72c80dad1f8a5e22"),
}
# pipe(PROMPT, num_images=2, num_candidates=4, seed=SEED, guidance_scale=1, top_k=32) (the settings
# of the recording, whatever pipeline.yaml says now): the reranker's order, its scores (the cosine plus
# pipeline.yaml's relation_weight x the cut-view relation contrast: PROMPT names a side), and pixels
# [8:10, 36:38] of both images (the red circle of each: above a blue square in the first, beside a
# second red one in the second)
EXPECTED_SEEDS = [12, 13]  # shapes64 of 2026-12-02 (fourth stop: configs/transformer_shapes64_continue3.yaml)
EXPECTED_SCORES = [2.3578929901123047, 0.8745571374893188]  # cosine + object, relation, consensus terms
EXPECTED_PIXELS = [[[[217, 40, 43], [216, 40, 40]], [[217, 39, 44], [217, 38, 41]]], [[[223, 41, 41], [222, 42, 44]], [[220, 38, 41], [219, 39, 42]]]]


@pytest.fixture(scope="module")
def pipe():
    return TextToImagePipeline.from_pretrained("shapes64")


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_shapes64_draws_the_recorded_tokens(pipe, guidance_scale):
    _, ids = pipe.encode_prompts([PROMPT])
    tokens = sample_image_tokens(pipe.transformer, pipe.transformer_config, ids.repeat(4, 1), list(range(SEED, SEED + 4)),
                                 guidance_scale=guidance_scale, top_k=32)
    first_rows, digest = EXPECTED_TOKENS[guidance_scale]
    assert tokens[:, :32].tolist() == first_rows
    assert hashlib.sha256(json.dumps(tokens.tolist()).encode()).hexdigest() == digest


def test_shapes64_pipeline_ranks_and_paints_as_recorded(pipe):
    out = pipe(PROMPT, num_images=2, num_candidates=4, seed=SEED, guidance_scale=1.0, top_k=32, temperature=1.0,
               top_p=1.0, decode_weights="fp32")
    assert out.seeds == EXPECTED_SEEDS
    # The reranker's fp32 scores over 64 px images and their object views: measured equal to 1e-7
    # here; 1e-3 is above what one pixel moved by a rounding level does to a view's cosine (the views
    # threshold pixels, rerank/objects.py) and far below a changed image (scores differ by 1.0).
    np.testing.assert_allclose(out.scores, EXPECTED_SCORES, atol=1e-3)
    pixels = np.stack([np.asarray(im) for im in out.images])[:, 8:10, 36:38].astype(int)
    # The VQ decoder's fp32 output is rounded to uint8: float rounding can move a value that
    # sits at .5 by one level; 1 is the bound, anything more is a changed image.
    np.testing.assert_allclose(pixels, EXPECTED_PIXELS, atol=1)
