"""decode_weights="fused": the whole stack forward in one compiled call (fused.py, fused_step.c)."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mini_t2i.transformer.decoder import decoders
from mini_t2i.transformer.fused import FusedLinear, FusedUnavailable, fused_available
from mini_t2i.transformer.model import build_model
from mini_t2i.transformer.sampler import sample_image_tokens

from conftest import captions, design_and_codes, stepped_logits

AVAILABLE, WHY = fused_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)


def test_the_gemv_is_an_fp16_weight_matmul_and_rows_never_mix():
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(39, 64, generator=g) * 0.05, torch.randn(7, 64, generator=g)  # 39: 9 tiles of 4 and 3 rows
    lin = FusedLinear(w)
    y = lin(x)
    assert y.shape == (7, 39) and y.dtype == torch.float32
    torch.testing.assert_close(y, x @ w.half().float().T, rtol=1e-5, atol=1e-5)
    # 7 rows run as a group of 4 and one of 3; alone, each row is a group of 1: bit for bit the same.
    for i in range(7):
        assert torch.equal(lin(x[i:i + 1]), y[i:i + 1])
    assert lin(x.view(7, 1, 64)).shape == (7, 1, 39)


@pytest.mark.parametrize("image_order", ["raster", "blocks"])
def test_a_fused_prefill_equals_its_steps_and_identical_rows_run_once(small_layout, tokenizer, image_order):
    # (How close fused's logits are to fp32's: test_transformer_quantize.py, with the other formats.)
    cfg, model, ids, steps = design_and_codes(small_layout, tokenizer, image_order, 8)
    stepped = stepped_logits(model, cfg, ids, steps, "fused")  # (9, 3, V)
    # A prefill over the caption and the first codes gives the logits that stepping through them
    # gives, bit for bit: a position's result is the same in a prefill and alone (blocks: whole blocks).
    given = cfg.block_len if image_order == "blocks" else 4
    decoder = decoders(cfg)[0](model, cfg, max_batch=3, decode_weights="fused")
    prefilled = decoder.prefill(torch.cat([ids, steps[:, :given]], dim=1))
    assert torch.equal(prefilled, stepped[given])
    # Identical rows of a prefill run once, their cache copied: the same logits then and after.
    rows = [0, 0, 1]
    assert torch.equal(decoder.prefill(ids[rows]), stepped[0][rows])
    assert torch.equal(decoder.decode(steps[rows, :1]), stepped[1][rows])


@pytest.mark.parametrize("image_order", ["raster", "blocks"])
def test_fused_sampling_draws_the_same_images_at_any_thread_count(small_layout, tokenizer, image_order):
    # The C pool splits outputs and (row, head) pairs, never a sum. (The same image alone or in a
    # batch: test_transformer_quantize.py, with int8.)
    cfg = dataclasses.replace(small_layout, image_order=image_order)
    model = build_model(cfg, seed=0).eval()
    ids, seeds = captions(tokenizer, 4), [5, 6, 7, 8]
    threads = torch.get_num_threads()
    try:
        draws = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            draws.append(sample_image_tokens(model, cfg, ids, seeds, guidance_scale=2.0, top_k=16,
                                             decode_weights="fused"))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])


def test_the_stack_refuses_rows_or_positions_beyond_its_cache(small_model, small_layout, tokenizer):
    decoder = decoders(small_layout)[0](small_model, small_layout, max_batch=2, decode_weights="fused")
    x = torch.zeros(3, 1, small_layout.shape[1])
    with pytest.raises(ValueError, match="3 rows at positions 0..0: its cache holds 2 rows"):
        decoder.core.fused(x, 0)
    with pytest.raises(ValueError, match=f"its cache holds 2 rows and {small_layout.sequence_length} positions"):
        decoder.core.fused(x[:1], small_layout.sequence_length)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})


def test_the_library_is_built_once_into_the_cache_folder_and_a_missing_compiler_is_named(tmp_path):
    code = "from mini_t2i.transformer.fused import load_library; load_library(); print('ok')"
    first = _run(code, MINI_T2I_CACHE=str(tmp_path))
    assert first.returncode == 0 and "ok" in first.stdout, first.stderr
    built = list((tmp_path / "fused").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary folder or half-written file left
    stamp = built[0].stat().st_mtime_ns
    assert _run(code, MINI_T2I_CACHE=str(tmp_path), CC="no-such-cc").returncode == 0  # built: no compiler needed
    assert built[0].stat().st_mtime_ns == stamp
    missing = _run(code, MINI_T2I_CACHE=str(tmp_path / "elsewhere"), CC="no-such-cc")
    assert missing.returncode != 0
    assert FusedUnavailable.__name__ in missing.stderr
    assert "no C compiler: 'no-such-cc' is not on PATH" in missing.stderr and "decode_weights='fp16'" in missing.stderr


def test_a_forked_child_runs_the_threaded_gemv_on_workers_of_its_own():
    # The parent's C workers do not exist in a fork()ed child; the child must start its own pool,
    # not wait for the parent's (the gemv alone: torch's own OpenMP pool is not fork-safe).
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(0)
        lin, x = FusedLinear(torch.randn(64, 32, generator=g)), torch.randn(3, 32, generator=g)
        parent = lin(x)  # starts the parent's pool
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.write(write, b"same" if torch.equal(lin(x), parent) else b"different")
            finally:
                os._exit(0)
        os.close(write)
        for _ in range(300):  # a child that waits for its parent's workers never ends: 30 s, then fail
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in the fused gemv")
        assert os.read(read, 16) == b"same" and status == 0
    finally:
        torch.set_num_threads(threads)


def test_an_unwritable_build_folder_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = "from mini_t2i.transformer.fused import load_library; load_library()"
    result = _run(code, MINI_T2I_CACHE=str(blocker))  # the build folder would be inside a file
    assert result.returncode != 0 and "is not writable" in result.stderr and "MINI_T2I_CACHE" in result.stderr


def test_auto_leaves_fused_for_a_model_whose_widths_do_not_fit(small_layout):
    from mini_t2i.transformer.fused import fused_runs
    from mini_t2i.transformer.quantize import auto_decode_weights

    assert fused_runs(small_layout) == (True, "") and auto_decode_weights("cpu", cfg=small_layout) == "fused"
    odd = dataclasses.replace(small_layout, hidden_size=60, num_heads=5)  # heads of 12: not a multiple of 8
    ok, why = fused_runs(odd)
    assert not ok and "cannot run this model" in why and "decode_weights='fp16'" in why
    assert auto_decode_weights("cpu", cfg=odd) in ("int8", "fp16")
