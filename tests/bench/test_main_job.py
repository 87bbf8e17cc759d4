"""bench/main_job.py: the README's generate command in fresh processes, and its parts."""

import json


def test_the_main_job_is_timed_whole_and_in_parts(tiny_pipeline_dir, tmp_path):
    from mini_t2i.bench.main_job import main

    out = tmp_path / "main_job.json"
    main(["--repeats", "1", "--threads", "1", "--model", str(tiny_pipeline_dir), "--decode-weights", "int8",
          "--out", str(out)])
    report = json.loads(out.read_text())
    assert len(report["wall_s"]) == 1 and report["median_wall_s"] == report["wall_s"][0] > 0
    assert list(report["parts_s"]) == ["import torch", "import mini_t2i", "load pipeline", "sample", "rerank",
                                       "interpreter start and exit"]
    assert all(v >= 0 for v in report["parts_s"].values()) and report["parts_s"]["rerank"] > 0
    assert "--decode-weights int8" in report["command"]
