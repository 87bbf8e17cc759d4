"""The demo served for real on 127.0.0.1 and called through gradio_client."""

import time

import pytest

gradio = pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")
from gradio_client import Client, handle_file  # noqa: E402  (ships with gradio)
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def server(pool):
    from mini_t2i.demo.ui import build_demo, free_port, launch

    demo = build_demo(pool)
    port = free_port()
    launch(demo, "127.0.0.1", port, block=False)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[1], verbose=False)


def generate(client, prompt="three green stars", model="shapes64", num_images=4, num_candidates=8, seed=0, **kw):
    args = dict(guidance_scale=1.0, temperature=1.0, top_k=32, top_p=1.0) | kw
    return client.predict(prompt, model, num_images, num_candidates, args["guidance_scale"], args["temperature"],
                          args["top_k"], args["top_p"], seed, api_name="/generate")


def test_api_names_follow_the_pipeline(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(api) >= {"/generate", "/edit", "/describe"}
    names = [p["parameter_name"] for p in api["/generate"]["parameters"]]
    assert names == ["prompt", "model", "num_images", "num_candidates", "guidance_scale", "temperature", "top_k",
                     "top_p", "seed"]


def test_generate_returns_ranked_images_and_a_grid(client, pool):
    from PIL import Image

    gallery, status, grid = generate(client, seed=5)
    assert len(gallery) == 4 and "ranked by the reranker" in status
    scores = [float(item["caption"].split("score ")[1].split(" ")[0]) for item in gallery]
    assert scores == sorted(scores, reverse=True)
    expected = pool.get("shapes64")("three green stars", num_images=4, num_candidates=8, seed=5, top_k=32,
                                    guidance_scale=1.0)  # the settings of the demo call above
    assert [item["caption"].split("seed ")[1] for item in gallery] == [str(s) for s in expected.seeds]
    assert Image.open(grid).format == "PNG" and Image.open(gallery[0]["image"]).size == (256, 256)


def test_bad_input_is_a_clear_error_not_a_traceback(client):
    # Sliders and dropdowns are range-checked by gradio itself before our handlers' own checks.
    cases = [(dict(prompt=""), "the prompt is empty"), (dict(num_candidates=2), "num_candidates=2 < num_images=4"),
             (dict(temperature=7.0), "7.0 is greater than maximum value 2.0"), (dict(model="sd-xl"), "sd-xl"),
             (dict(seed=-3), "seed=-3 is out of range")]
    for changes, message in cases:
        with pytest.raises(AppError, match=message) as err:
            generate(client, **changes)
        assert "Traceback" not in str(err.value)


def test_edit_and_describe_over_the_api(client, tmp_path):
    from mini_t2i.shapes.scenes import make_sample

    sample = make_sample("test_iid", 0)
    sample.image.convert("P").save(tmp_path / "scene.png")  # a palette image: converted, not refused
    image = handle_file(str(tmp_path / "scene.png"))
    gallery, status = client.predict(image, "variations", "", "shapes64", 4, 3, 6, 0, api_name="/edit")
    assert len(gallery) == 3 and "top 4 of 16" in status
    label, table = client.predict(image, f"{sample.text}\na pink star on a white background", "shapes64", 2,
                                  api_name="/describe")
    assert label["label"] == sample.text and len(label["confidences"]) == 2
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(AppError, match="cannot use that image"):
        client.predict(handle_file(str(tmp_path / "junk.png")), "variations", "", "shapes64", 4, 3, 6, 0,
                       api_name="/edit")


def test_stop_ends_sampling_and_the_queue_serves_one_at_a_time(server, client):
    demo, url = server
    pool = demo.pool
    stopped = pool.stopped_early
    # The largest request the limits allow (64 candidates, guidance: 128 rows), so sampling outlasts the round trip.
    # gradio 6.31 loses a client's cancel now and then (6 of 18 in docs/scripts/cancel_probe.py: the request
    # then runs to its end), so a stop is tried up to 4 times; one must close the generator mid-sampling.
    for attempt in range(4):
        job = client.submit("a red circle above a blue square", "emoji64", 16, 64, 3.0, 1.0, 64, 1.0, attempt,
                            api_name="/generate")
        # Hang guards only (generous for a loaded 2-core machine): here the first preview takes ~4.5 s of a
        # ~40 s request and the generator closes at the next row (~2.5 s).
        deadline = time.time() + 300
        while not job.outputs() and time.time() < deadline:  # a preview arrived: sampling is under way
            time.sleep(0.05)
        assert job.outputs(), "no preview within 300 s"
        job.cancel()
        deadline = time.time() + 300
        while pool.stopped_early == stopped and pool.running and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the count follows the slot's release (handlers.generate's finally)
        if pool.stopped_early > stopped:
            break
    assert pool.stopped_early >= stopped + 1  # a generator was closed mid-sampling
    # Two users at once: the queue (concurrency 1) runs them one after the other, both finish.
    other = Client(url, verbose=False)
    jobs = [c.submit("three green stars", "shapes64", 1, 2, 1.0, 1.0, 32, 1.0, seed, api_name="/generate")
            for seed, c in enumerate([client, other])]
    results = [j.result(timeout=600) for j in jobs]  # a hang guard: ~2 s each here
    assert all(len(r[0]) == 1 for r in results) and pool.peak_running == 1


def test_readme_client_snippet_runs(server, capsys):
    """The README's gradio_client example, run as written against this server."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "gradio_client" in block)
    exec(snippet.replace("http://127.0.0.1:7860/", server[1]), {})
    assert "ranked by the reranker" in capsys.readouterr().out
