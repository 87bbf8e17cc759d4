"""mini-t2i's Gradio demo, and the app file of its Hugging Face Space (demo/README.md).

    python demo/app.py                                  # every shipped model, 127.0.0.1:7860
    python demo/app.py --model shapes64 --model runs/my_pipeline --port 8000
    python demo/app.py --host 0.0.0.0                   # reachable from other machines

The UI and its handlers live in `mini_t2i.demo`; this file parses options and serves.
"""

from __future__ import annotations

import argparse
import os

from mini_t2i.demo.ui import build_demo, launch  # noqa: F401  (build_demo(pipe) is the public entry)
from mini_t2i.transformer.config import DECODE_WEIGHT_CHOICES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the mini-t2i demo.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; a Space sets 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--model", action="append", default=None, metavar="NAME_OR_PATH",
                        help="a shipped model name, a pipeline folder or a cached Hub id; repeat for several "
                             "(default: every shipped model)")
    parser.add_argument("--concurrency", type=int, default=1, help="requests run at once; others queue")
    parser.add_argument("--max-queue", type=int, default=32, help="requests waiting at most; more are turned away")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (bf16 on GPUs, fp32 on CPUs)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--decode-weights", choices=DECODE_WEIGHT_CHOICES, default=None,
                        help="the decoder's weights on CPUs (default: each model's pipeline.yaml; docs/speed.md)")
    parser.add_argument("--no-prompt-filter", action="store_true",
                        default=os.environ.get("MINI_T2I_PROMPT_FILTER", "on").lower() in ("off", "0", "false"),
                        help="serve every prompt (default: refuse blocklist terms; env MINI_T2I_PROMPT_FILTER=off)")
    parser.add_argument("--blocklist", default=os.environ.get("MINI_T2I_BLOCKLIST", ""),
                        help="a blocklist file, one term a line (default: mini_t2i/demo/blocklist.txt)")
    parser.add_argument("--max-file-size", default="20mb", help="largest upload the server accepts")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from mini_t2i.runtime import setup_runtime

    args = parse_args(argv)
    device = setup_runtime(args.device, args.threads)
    from mini_t2i.demo.handlers import DemoLimits

    limits = DemoLimits(prompt_filter=not args.no_prompt_filter, blocklist=args.blocklist,
                        max_file_size=args.max_file_size)
    demo = build_demo(models=args.model, limits=limits, concurrency=args.concurrency, max_queue=args.max_queue,
                      device=str(device), decode_weights=args.decode_weights)
    launch(demo, args.host, args.port)


if __name__ == "__main__":
    main()
