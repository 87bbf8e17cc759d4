"""The `mini-t2i` command line, end to end on tiny inputs, in this process."""

import json

from mini_t2i.cli import main


def test_shapes_render_then_score(tmp_path, capsys):
    out = tmp_path / "gt"
    assert main(["shapes", "render", "--split", "test_heldout", "--count", "12", "--size", "64",
                 "--seed", "3", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 12
    assert main(["shapes", "score", str(out)]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["overall"] == 1.0 and scores["count"] == 12
    assert "overall" in capsys.readouterr().out


def test_train_eval_pretokenize_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    common = [f"cache_dir={tmp_path / 'cache'}"]
    assert main(["train", "vq", "--config", "configs/vq_tiny.yaml", f"run_dir={run}", "steps=2", *common]) == 0
    assert main(["eval", "vq", "--model", str(run / "final"), "--split", "test_heldout", "--count", "6"]) == 0
    assert '"usage"' in capsys.readouterr().out
    assert main(["pretokenize", "--config", "configs/pretokenize_tiny.yaml", f"vq_model={run / 'final'}",
                 f"out_dir={tmp_path / 'tok'}", "data.count=5"]) == 0
    assert json.loads((tmp_path / "tok" / "info.json").read_text())["count"] == 5


def test_user_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["train", "vq", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["train", "vq", "--config", "configs/vq_tiny.yaml", "model.codebok_size=3"]) == 2
    assert main(["eval", "vq", "--model", str(tmp_path)]) == 2
    assert main(["shapes", "score", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "model.codebok_size" in err and "config.yaml" in err
    assert "Traceback" not in err
