"""`mini-t2i bench --quick`: every section measured, the keys the full run writes, and the
invariants that hold whatever the speed (no timing is asserted: speed lives in the bench)."""

import json

import pytest

from mini_t2i.bench.suite import cpu_formats


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from mini_t2i.cli import main

    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", "--quick", "--threads", "1", "--out", str(out)]) in (0, None)
    return json.loads(out.read_text())


def test_the_machine_limits_are_measured(report):
    m = report["machine"]
    assert m["fp32_matmul_gflops"] > 0 and m["bf16_matmul_gflops"] > 0 and m["memory_read_gb_s"] > 0
    assert m["bf16_is_fast"] == (m["bf16_matmul_gflops"] > m["fp32_matmul_gflops"])


@pytest.mark.parametrize("index", [0, 1])  # the raster and the block-factorized tiny model
def test_sampling_rows_cover_batches_guidance_and_the_uncached_reference(report, index):
    model = report["models"][index]
    rows = model["sampling"]
    assert {(r["engine"], r["batch_size"], r["guidance_scale"]) for r in rows} == {
        ("decoder", 1, 1.0), ("decoder", 1, 3.0), ("decoder", 2, 1.0), ("decoder", 2, 3.0),
        ("uncached", 1, 1.0), ("uncached", 1, 3.0)}
    # The fast decoder is timed with each weight format that runs here, interleaved; the reference in fp32.
    formats = set(cpu_formats())
    assert formats >= {"fp32", "fp16", "int8"}
    assert {(r["engine"], r["decode_weights"]) for r in rows} == {("decoder", w) for w in formats} | {("uncached", "fp32")}
    assert set(model["bandwidth_at_batch_1"]) == formats
    assert all(b["guidance_cost"] > 0 for b in model["bandwidth_at_batch_1"].values())
    for r in rows:  # the same float64 formulas on the same numbers (~1e-16); approx's rel 1e-6; no speed asserted
        assert r["tokens_per_s"] == pytest.approx(r["batch_size"] * model["image_tokens"] / r["seconds"])
    ref = [r for r in rows if r["engine"] == "uncached"]
    assert all(r["speedup_vs_uncached"] == pytest.approx(1.0) for r in ref)  # its own seconds / seconds: exact
    assert all(r["speedup_vs_uncached"] > 0 for r in rows if r["engine"] == "decoder" and r["batch_size"] == 1)


def test_flops_and_bytes_follow_from_the_model(report):
    model, blocks = report["models"]
    assert (model["image_order"], blocks["image_order"]) == ("raster", "blocks")
    flops = model["flops_per_image"]
    # CFG runs the conditional and unconditional rows as one batch: exactly twice the matmuls.
    assert flops["cfg_3"] == pytest.approx(2 * flops["cfg_1"])  # counted, not timed: float64 ulp-exact
    layers, hidden, _ = model["shape"]
    per_layer = 4 * hidden * hidden + 3 * hidden * (int(hidden * 8 / 3) // 32 * 32) + 2 * hidden
    expected = 4 * (layers * per_layer + hidden + model["codebook_size"] * hidden)  # fp32, image rows of the head
    assert model["weight_bytes_per_decode_step"] == expected
    # int8: a byte per matrix weight and a 4-byte scale per output row; norms stay fp32.
    by_format = model["weight_bytes_per_decode_step_by_format"]
    assert by_format["fp32"] == expected and expected / 4 < by_format["int8"] < expected / 3
    assert expected / 2 <= by_format["fp16"] < expected / 1.9
    assert by_format.get("fused", by_format["fp16"]) == by_format["fp16"]  # the same fp16 matrices
    # At least 2 FLOPs per weight per image token (one multiply-add per weight per token).
    assert flops["cfg_1"] >= 2 * expected / 4 * model["image_tokens"]
    assert 0 < model["training"]["mfu"] and model["training"]["tokens_per_s"] > 0
    # Blocks: the main layers once per 2x2 block, the depth layer (1) and the head every code.
    main, depth = layers * per_layer + hidden, per_layer + hidden  # layers and the final norm
    assert blocks["weight_bytes_per_decode_step"] == int(4 * (main / 4 + depth + model["codebook_size"] * hidden))
    assert blocks["flops_per_image"]["cfg_1"] < flops["cfg_1"]  # fewer positions through the main layers
    assert blocks["flops_per_image"]["cfg_3"] == pytest.approx(2 * blocks["flops_per_image"]["cfg_1"])


def test_generate_is_broken_into_its_parts(report):
    g = report["generate"]
    assert set(g["parts_s"]) == {"prefill", "decode", "vq_decode", "rerank"}
    assert sum(g["shares"].values()) == pytest.approx(1.0)  # 4 float64 quotients of one sum: ~4 ulp
    assert g["first_preview_s"] > 0 and g["total_s"] > 0
