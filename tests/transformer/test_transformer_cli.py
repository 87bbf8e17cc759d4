"""Stage 2 through the command line and the benchmark entry point, on tiny inputs."""

import json

from mini_t2i.cli import main


def test_train_eval_and_bench_a_tiny_transformer(token_shards, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "transformer", "--config", "configs/transformer_tiny.yaml", f"run_dir={run}",
                 f"tokens={token_shards['train']}", f"val_tokens={token_shards['val']}", "steps=3",
                 "eval_every=0", "val_count=8", "sample_count=4", "num_threads=1"]) == 0
    final = run / "final"
    assert (final / "model.safetensors").is_file() and (final / "train_config.yaml").is_file()
    assert main(["eval", "transformer", "--model", str(final), "--split", "test_heldout", "--count", "4",
                 "--top-k", "32", "--out", str(tmp_path / "samples")]) == 0
    result = json.loads((tmp_path / "samples" / "eval.json").read_text())
    assert result["checker_ground_truth"]["overall"] == 1.0 and result["count"] == 4
    assert 0.0 <= result["checker_samples"]["overall"] <= 1.0
    assert len(list((tmp_path / "samples").glob("*.png"))) == 4
    from mini_t2i.shapes.files import score_dir  # the samples folder is the layout `shapes score` reads

    assert score_dir(tmp_path / "samples")["overall"] == result["checker_samples"]["overall"]
    out = capsys.readouterr().out
    assert "checker on samples" in out and "ground truth 1.000" in out

    from mini_t2i.bench.sampling import main as bench

    bench(["--model", str(final), "--batch-sizes", "1", "--repeats", "1", "--threads", "1",
           "--out", str(tmp_path / "bench.json")])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["batch_size"], r["kv_cache"]) for r in report["results"]] == [(1, True), (1, False)]
    assert all(r["tokens_per_s"] > 0 for r in report["results"])


def test_eval_of_a_folder_that_is_not_a_model_is_one_line(tmp_path, capsys):
    assert main(["eval", "transformer", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a saved transformer" in err and "Traceback" not in err


def test_the_sampling_bench_times_both_image_orders_in_one_run(tmp_path):
    from mini_t2i.bench.sampling import main as bench

    bench(["--preset", "tiny", "--image-orders", "raster", "blocks", "--batch-sizes", "1", "2", "--repeats", "1",
           "--threads", "1", "--no-uncached", "--guidance-scales", "2", "--out", str(tmp_path / "orders.json")])
    rows = json.loads((tmp_path / "orders.json").read_text())["results"]
    assert [(r["batch_size"], r["image_order"]) for r in rows] == [
        (1, "raster"), (1, "blocks"), (2, "raster"), (2, "blocks")]  # interleaved: one run, both designs
    assert all(r["guidance_scale"] == 2 and r["tokens_per_s"] > 0 for r in rows)
    assert rows[1]["parameters"] > rows[0]["parameters"]  # the block model's 4 code tables and depth layer


def test_the_sampling_bench_times_weight_formats_side_by_side_in_the_peers_layout(tmp_path):
    from mini_t2i.bench.sampling import main as bench

    bench(["--preset", "tiny", "--peers", "--decode-weights", "fp32", "int8", "--guidance-scales", "1", "3",
           "--top-k", "256", "--batch-sizes", "1", "--repeats", "1", "--threads", "1", "--no-uncached",
           "--out", str(tmp_path / "weights.json")])
    report = json.loads((tmp_path / "weights.json").read_text())
    rows = report["results"]
    assert [(r["guidance_scale"], r["decode_weights"]) for r in rows] == [
        (1, "fp32"), (1, "int8"), (3, "fp32"), (3, "int8")]
    assert all(r["top_k"] == 256 and r["tokens_per_s"] > 0 for r in rows)
    assert "peers layout" in report["model"] and report["image_tokens"] == 256
