"""`python demo/app.py` as users start it: a real server process, a real browser, the Space export."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """demo/app.py in its own process, serving the shipped models."""
    from mini_t2i.demo.ui import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "demo" / "app.py"), "--port", str(port), "--threads", "2"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 600  # a hang guard: importing torch + gradio and loading models on a loaded 2-core machine
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"demo/app.py did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_app_serves_the_shipped_models(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    for model, prompt in (("shapes64", "three green stars"), ("emoji64", "red apple")):
        gallery, status, grid = client.predict(prompt, model, 2, 4, 1.0, 1.0, 32, 1.0, 0, api_name="/generate")
        assert len(gallery) == 2 and "ranked by the reranker" in status and Path(grid).is_file()


def test_browser_types_a_prompt_and_sees_images(app_url, tmp_path):
    pytest.importorskip("playwright", reason="the browser test needs playwright: pip install -e '.[dev]'")
    from mini_t2i.demo.browser import drive_demo, find_chromium

    if find_chromium() is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    from PIL import Image

    shot = tmp_path / "demo.png"
    run = drive_demo(app_url, "a red circle above a blue square", screenshot=shot)
    assert run.image_count == 4 and "4 of 8 candidates" in run.status
    assert 0 < run.first_preview_s < run.final_s
    assert Image.open(shot).size == (1280, 900)


def test_space_export_runs_on_its_own(tmp_path):
    from mini_t2i.demo.space import export_space

    space = export_space(tmp_path / "space")
    readme = (space / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    requirements = (space / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0" in requirements and any(r.startswith("gradio") for r in requirements)
    assert (space / "mini_t2i" / "pretrained" / "shapes64" / "transformer" / "model.safetensors").is_file()
    # The Space imports the package copy beside app.py, not the one installed here.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", "import app, mini_t2i; print(mini_t2i.__file__); "
                          "print(callable(app.build_demo) and callable(app.main))"],
                         cwd=space, env=env, capture_output=True, text=True, timeout=600)  # a hang guard
    assert out.returncode == 0, out.stderr
    package_file, has_entry = out.stdout.split()
    assert Path(package_file).resolve().is_relative_to(space.resolve()) and has_entry == "True"
