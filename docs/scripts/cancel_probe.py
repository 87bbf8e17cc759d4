"""How often gradio_client's job.cancel() stops a streaming generate in the demo (the demo and stress
tests' flake): a 64-candidate shapes64 request per trial, cancelled at its first preview; prints whether
the server closed the generator (pool.stopped_early) and, where not, when the action ended.
    python docs/scripts/cancel_probe.py TRIALS"""
import gc, time, sys
from gradio_client import Client
from mini_t2i.demo.ui import build_demo, free_port, launch
demo = build_demo(models=["shapes64"]); port = free_port(); launch(demo, "127.0.0.1", port, block=False)
url = f"http://127.0.0.1:{port}/"
for trial in range(int(sys.argv[1])):
    client = Client(url, verbose=False)
    before = demo.pool.stopped_early
    job = client.submit("a red circle above a blue square", "shapes64", 16, 64, 3.0, 1.0, 64, 1.0, trial, api_name="/generate")
    while not job.outputs(): time.sleep(0.05)
    job.cancel()
    t = time.time()
    while demo.pool.stopped_early == before and time.time() - t < 15: time.sleep(0.1)
    counted = demo.pool.stopped_early - before
    print(trial, 'counted', counted, 'running', demo.pool.running, flush=True)
    if not counted:
        while demo.pool.running and time.time() - t < 120: time.sleep(0.5)
        print('   running ended after', round(time.time() - t, 1), 's; stopped_early', demo.pool.stopped_early - before, 'job done', job.done(), flush=True)
demo.close()
