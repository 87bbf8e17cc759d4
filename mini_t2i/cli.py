"""The `mini-t2i` command line. Each subcommand parses its arguments and calls one
library function; nothing here does work of its own.

    mini-t2i shapes render --split test_iid --count 200 --size 64 --seed 0 --out DIR
    mini-t2i shapes score DIR
    mini-t2i train vq --config configs/vq_shapes64.yaml [key=value ...]
    mini-t2i train text-tokenizer --config configs/text_tokenizer_shapes.yaml [key=value ...]
    mini-t2i pretokenize --config configs/pretokenize_shapes64.yaml [key=value ...]
    mini-t2i train transformer --config configs/transformer_shapes64.yaml [key=value ...]
    mini-t2i train transformer --backend jax --config configs/transformer_shapes64.yaml [key=value ...]
    mini-t2i export-jax runs/transformer_shapes64_jax --step 100 --out runs/transformer_shapes64_jax/step100
    mini-t2i train rerank --config configs/rerank_shapes64.yaml [key=value ...]
    mini-t2i eval vq --model runs/vq_shapes64/final --split test_heldout --count 300
    mini-t2i eval transformer --model runs/transformer_shapes64/final --split test_iid --count 300
    mini-t2i data emoji --out data/emoji64
    mini-t2i generate "a red circle above a blue square" --num-images 4 --out DIR
    mini-t2i generate --prompts DIR/metadata.jsonl --out GEN --seed 0
    mini-t2i eval shapes --model shapes64 --count 300 --num-candidates 8
    mini-t2i pipeline assemble --config configs/pipeline_shapes64.yaml
    mini-t2i pipeline card mini_t2i/pretrained/shapes64
    mini-t2i train diffusion --config configs/diffusion_shapes64.yaml
    mini-t2i compare --config configs/compare_shapes64.yaml [key=value ...]
    mini-t2i bench [--quick] [--threads 2] [--out runs/bench/bench.json]
"""

from __future__ import annotations

import argparse
import sys


def _stage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (see configs/); omitted: the defaults")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides of config keys, e.g. model.codebook_size=256 steps=100")


def _load(cls, args):
    from mini_t2i.config import load_config

    return load_config(cls, args.config, args.overrides)


def cmd_shapes_render(args) -> None:
    from mini_t2i.shapes.files import render_split_to_dir

    out = render_split_to_dir(args.split, args.count, args.size, args.seed, args.out)
    print(f"wrote {args.count} {args.split} scenes at {args.size} px to {out}")


def cmd_shapes_score(args) -> None:
    from mini_t2i.shapes.files import format_scores, score_dir

    scores = score_dir(args.dir)
    print(format_scores(scores))


def cmd_train_vq(args) -> None:
    from mini_t2i.vq.train import VQTrainConfig, train_vq

    train_vq(_load(VQTrainConfig, args))


def cmd_train_text_tokenizer(args) -> None:
    from mini_t2i.text.tokenizer import TextTokenizerStageConfig, train_text_tokenizer_from_config

    train_text_tokenizer_from_config(_load(TextTokenizerStageConfig, args))


def cmd_pretokenize(args) -> None:
    from mini_t2i.data.pretokenize import PretokenizeConfig, pretokenize

    pretokenize(_load(PretokenizeConfig, args))


def cmd_train_transformer(args) -> None:
    from mini_t2i.transformer.config import TransformerTrainConfig
    from mini_t2i.transformer.train import train_transformer

    cfg = _load(TransformerTrainConfig, args)
    if args.backend == "jax":
        from mini_t2i.transformer_jax.train import train_transformer_jax  # ImportError names the [jax] extra

        train_transformer_jax(cfg)
    else:
        train_transformer(cfg)


def cmd_train_rerank(args) -> None:
    from mini_t2i.rerank.train import RerankTrainConfig, train_rerank

    train_rerank(_load(RerankTrainConfig, args))


def cmd_train_diffusion(args) -> None:
    from mini_t2i.diffusion.train import DiffusionTrainConfig, train_diffusion

    train_diffusion(_load(DiffusionTrainConfig, args))


def cmd_compare(args) -> None:
    from mini_t2i.compare.config import CompareConfig
    from mini_t2i.compare.harness import run_compare

    run_compare(_load(CompareConfig, args))


def cmd_eval_transformer(args) -> None:
    from mini_t2i.transformer.evaluate import evaluate_on_shapes

    evaluate_on_shapes(args.model, args.split, args.count, args.seed, args.batch_size, args.guidance_scale,
                       args.temperature, args.top_k, args.top_p, out_dir=args.out)


def cmd_eval_captions(args) -> None:
    import json

    from mini_t2i.transformer.caption_eval import PARAPHRASES, evaluate_captions

    result = evaluate_captions(args.model, args.tokens, args.text_tokenizer, () if args.no_paraphrases else PARAPHRASES)
    if args.out:
        from mini_t2i.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


def cmd_eval_vq(args) -> None:
    from mini_t2i.vq.evaluate import evaluate_vq_on_data

    evaluate_vq_on_data(args.model, args.split, args.count, args.seed)


def cmd_eval_rerank(args) -> None:
    if args.score == "generator":  # the generator's likelihood: the pipeline layer's
        from mini_t2i.pipeline.rerank_eval import diagnose_generator

        diagnose_generator(args.pipeline, args.images, args.split, args.count, args.seed, args.out)
        return
    if not args.model:
        raise SystemExit("mini-t2i eval rerank: give --model RERANKER_FOLDER (or --score generator --pipeline P)")
    if args.images == "folder":  # a user's image folder: style words and names as the changes
        from mini_t2i.rerank.diagnose_folder import diagnose_folder

        if not args.folder:
            raise SystemExit("mini-t2i eval rerank --images folder: give --folder DIR (an image folder with a metadata.jsonl)")
        diagnose_folder(args.model, args.folder, args.text_tokenizer, args.count, args.seed, args.out)
        return
    if args.images == "samples":  # needs a generator: the pipeline layer's
        from mini_t2i.pipeline.rerank_eval import diagnose_samples

        diagnose_samples(args.model, args.pipeline, args.split, args.count, args.seed, args.text_tokenizer, args.out,
                         score=args.score, weights=(args.relation_weight, args.object_weight, args.consensus_weight))
        return
    from mini_t2i.rerank.diagnose import diagnose

    diagnose(args.model, args.images, args.split, args.count, args.seed, args.text_tokenizer, args.vq, args.out,
             score=args.score, relation_weight=args.relation_weight, object_weight=args.object_weight,
             consensus_weight=args.consensus_weight)


def _sampling_args(parser: argparse.ArgumentParser) -> None:
    """The pipeline's sampling arguments; unset ones take the model's pipeline.yaml values."""
    from mini_t2i.transformer.config import DECODE_WEIGHT_CHOICES  # torch-free

    parser.add_argument("--model", help="a pipeline folder or a shipped model name (default: shapes64)")
    parser.add_argument("--num-candidates", type=int, help="samples per image; the reranker keeps the best")
    parser.add_argument("--guidance-scale", type=float, help="classifier-free guidance (1 = off)")
    parser.add_argument("--guidance-schedule", choices=("constant", "rising"),
                        help="rising: from ~1 at the first token to --guidance-scale at the last")
    parser.add_argument("--temperature", type=float, help="0 = greedy")
    parser.add_argument("--top-k", type=int, help="0 = off")
    parser.add_argument("--top-p", type=float, help="1 = off")
    parser.add_argument("--seed", type=int, default=0, help="image k (over all prompts and candidates) uses seed+k")
    parser.add_argument("--batch-size", type=int, help="sequences sampled at once")
    parser.add_argument("--decode-weights", choices=DECODE_WEIGHT_CHOICES,
                        help="the decoder's weights on CPUs: smaller copies decode faster; fused: fp16 in one compiled C call a step; auto: fused where it builds, else int8 where the CPU has VNNI/AMX, else fp16 (docs/speed.md)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")


def _pipeline(args):
    from mini_t2i.pipeline.pipeline import TextToImagePipeline
    from mini_t2i.runtime import setup_runtime

    device = setup_runtime(args.device, args.threads)
    return TextToImagePipeline.from_pretrained(args.model, device=str(device))


def cmd_generate(args) -> None:
    import time

    from mini_t2i.pipeline.generate import generate_to_dir

    t0 = time.perf_counter()
    pipe = _pipeline(args)
    out = generate_to_dir(pipe, args.out, prompt=args.prompt, prompts_file=args.prompts, num_images=args.num_images,
                          num_candidates=args.num_candidates, guidance_scale=args.guidance_scale,
                          guidance_schedule=args.guidance_schedule, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, seed=args.seed, batch_size=args.batch_size,
                          decode_weights=args.decode_weights)
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")


def cmd_eval_shapes(args) -> None:
    from mini_t2i.pipeline.evaluate import evaluate_pipeline
    from mini_t2i.runtime import setup_runtime

    device = setup_runtime(args.device, args.threads)
    evaluate_pipeline(args.model, args.splits.split(","), args.count, args.num_candidates or 8, args.seed,
                      args.batch_size, args.guidance_scale, args.temperature, args.top_k, args.top_p, args.out,
                      device=str(device), guidance_schedule=args.guidance_schedule,
                      decode_weights=args.decode_weights)


def cmd_eval_fidelity(args) -> None:
    from mini_t2i.pipeline.fidelity_eval import evaluate_fidelity, format_result
    from mini_t2i.runtime import setup_runtime

    setup_runtime("cpu", args.threads)
    result = evaluate_fidelity(args.model, args.val, args.train, args.count, args.num_candidates,
                               batch_size=args.batch_size, out=args.out, samples_out=args.samples_out,
                               r_precision_captions=args.r_precision_captions)
    print(format_result(result))


def cmd_pipeline_assemble(args) -> None:
    from mini_t2i.pipeline.card import PipelineAssembleConfig, assemble_pipeline

    print(f"wrote {assemble_pipeline(_load(PipelineAssembleConfig, args))}")


def cmd_export_jax(args) -> None:
    from mini_t2i.transformer_jax.train import export_checkpoint  # ImportError names the [jax] extra

    print(f"wrote {export_checkpoint(args.run_dir, args.out, args.step)}")


def cmd_bench(args) -> None:
    from mini_t2i.bench.suite import run_from_args

    run_from_args(args)


def cmd_pipeline_card(args) -> None:
    from mini_t2i.pipeline.card import write_card

    print(f"wrote {write_card(args.dir)}")


def cmd_pipeline_captions(args) -> None:
    from mini_t2i.pipeline.describe import captions_from_files, shapes_captions, write_captions
    from mini_t2i.pipeline.folders import resolve_model
    from mini_t2i.text.tokenizer import TextTokenizer

    if not args.shapes and not args.files:
        raise ValueError("give --shapes N and/or --from FILE ... as the source of captions")
    folder = resolve_model(args.dir)
    captions = list(dict.fromkeys(shapes_captions(args.shapes) + captions_from_files(args.files)))
    path = write_captions(folder, captions, TextTokenizer.from_pretrained(folder / "text_tokenizer"))
    print(f"{path}: {sum(1 for _ in path.open())} captions")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mini-t2i", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    shapes = sub.add_parser("shapes", help="Shapes World: render splits and score images").add_subparsers(
        dest="action", required=True)
    render = shapes.add_parser("render", help="render a split to DIR/00000.png ... + metadata.jsonl")
    render.add_argument("--split", required=True, choices=["train", "val", "test_iid", "test_heldout"])
    render.add_argument("--count", type=int, default=200)
    render.add_argument("--size", type=int, default=64, choices=[32, 64, 128])
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--out", required=True)
    render.set_defaults(func=cmd_shapes_render)
    score = shapes.add_parser("score", help="score DIR (images + metadata.jsonl); writes DIR/scores.json")
    score.add_argument("dir")
    score.set_defaults(func=cmd_shapes_score)

    train = sub.add_parser("train", help="train a stage").add_subparsers(dest="stage", required=True)
    vq = train.add_parser("vq", help="the VQ image tokenizer")
    _stage_args(vq)
    vq.set_defaults(func=cmd_train_vq)
    text = train.add_parser("text-tokenizer", help="the BPE text tokenizer")
    _stage_args(text)
    text.set_defaults(func=cmd_train_text_tokenizer)

    transformer = train.add_parser("transformer", help="the transformer over text + image tokens")
    _stage_args(transformer)
    transformer.add_argument("--backend", choices=["torch", "jax"], default="torch",
                             help="torch (GPUs, CPUs, torchrun) or jax (TPUs, GPUs, CPUs; needs the [jax] extra)")
    transformer.set_defaults(func=cmd_train_transformer)
    rerank = train.add_parser("rerank", help="the CLIP reranker")
    _stage_args(rerank)
    rerank.set_defaults(func=cmd_train_rerank)
    diffusion = train.add_parser("diffusion", help="the diffusion baseline (a DiT, DDPM)")
    _stage_args(diffusion)
    diffusion.set_defaults(func=cmd_train_diffusion)

    compare = sub.add_parser("compare", help="the autoregressive pipeline against the diffusion baseline: "
                                             "compare.md, compare.json and compare.png")
    _stage_args(compare)
    compare.set_defaults(func=cmd_compare)

    pretok = sub.add_parser("pretokenize", help="encode a dataset once into token shards")
    _stage_args(pretok)
    pretok.set_defaults(func=cmd_pretokenize)

    from mini_t2i.data.builders.commands import add_data_commands  # argparse only; the builders load lazily

    add_data_commands(sub)

    evaluate = sub.add_parser("eval", help="evaluate a trained component").add_subparsers(dest="what", required=True)
    ev = evaluate.add_parser("vq", help="PSNR, codebook usage and the Shapes World ceiling of a tokenizer")
    ev.add_argument("--model", required=True, help="a tokenizer folder, e.g. runs/vq_shapes64/final")
    ev.add_argument("--split", default="val", choices=["val", "test_iid", "test_heldout"])
    ev.add_argument("--count", type=int, default=300)
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=cmd_eval_vq)
    et = evaluate.add_parser("transformer", help="Shapes World checker accuracy of samples, beside the ceilings")
    et.add_argument("--model", required=True, help="a transformer folder, e.g. runs/transformer_shapes64/final")
    et.add_argument("--split", default="test_iid", choices=["val", "test_iid", "test_heldout"])
    et.add_argument("--count", type=int, default=300)
    et.add_argument("--seed", type=int, default=0, help="scene seed of the split; image i is sampled with seed i")
    et.add_argument("--batch-size", type=int, default=32)
    et.add_argument("--guidance-scale", type=float, default=1.0)
    et.add_argument("--temperature", type=float, default=1.0)
    et.add_argument("--top-k", type=int, default=0)
    et.add_argument("--top-p", type=float, default=1.0)
    et.add_argument("--out", help="also write the samples, metadata.jsonl and eval.json here")
    et.set_defaults(func=cmd_eval_transformer)
    ec = evaluate.add_parser("captions", help="a transformer's loss on held-back captions and on paraphrases of them")
    ec.add_argument("--model", required=True, help="a transformer folder, e.g. runs/emoji_captions_minilm/final")
    ec.add_argument("--tokens", required=True, help="token shards of held-back images, e.g. data/tokens/emoji64_gan_val")
    ec.add_argument("--text-tokenizer", help="default: the model's training one (a folder, or minilm)")
    ec.add_argument("--no-paraphrases", action="store_true",
                    help="the held-back captions only (shards of another set than emoji64's val)")
    ec.add_argument("--out", help="also write the result as JSON here")
    ec.set_defaults(func=cmd_eval_captions)
    er = evaluate.add_parser("rerank", help="does the reranker prefer the true caption to each minimal change?")
    er.add_argument("--model", help="a reranker folder, e.g. mini_t2i/pretrained/rerank_shapes64")
    er.add_argument("--images", default="renders", choices=["renders", "reconstructions", "samples", "folder"],
                    help="folder: the images of --folder, against style and name changes of their captions")
    er.add_argument("--folder", help="for --images folder: an image folder (metadata.jsonl), e.g. data/emoji64/val")
    er.add_argument("--split", default="val", choices=["val", "test_iid", "test_heldout"])
    er.add_argument("--count", type=int, default=600, help="Shapes World scenes")
    er.add_argument("--seed", type=int, default=0)
    er.add_argument("--text-tokenizer", default="mini_t2i/pretrained/text_shapes")
    er.add_argument("--vq", default="mini_t2i/pretrained/vq_shapes64", help="for --images reconstructions")
    er.add_argument("--pipeline", default="shapes64", help="for --images samples or --score generator: the generator")
    er.add_argument("--score", default="auto", choices=["auto", "cosine", "head", "relations", "composition", "generator"],
                    help="auto: what reranking reads (the matching head where there is one, else the cosine); "
                         "relations: auto + --relation-weight x the cut-view relation contrast (rerank/relations.py); "
                         "composition: auto + the object, relation and consensus terms (rerank/objects.py); "
                         "generator: the pipeline's log p(codes | caption) instead of a reranker")
    er.add_argument("--relation-weight", type=float, default=1.0, help="for --score relations and composition")
    er.add_argument("--object-weight", type=float, default=0.5, help="for --score composition")
    er.add_argument("--consensus-weight", type=float, default=0.25, help="for --score composition")
    er.add_argument("--out", help="write the result as JSON here")
    er.set_defaults(func=cmd_eval_rerank)
    es = evaluate.add_parser("shapes", help="a pipeline's Shapes World accuracy with and without reranking")
    _sampling_args(es)
    es.add_argument("--splits", default="test_iid,test_heldout", help="comma-separated Shapes World splits")
    es.add_argument("--count", type=int, default=300, help="prompts per split")
    es.add_argument("--out", help="write the result as JSON here")
    es.set_defaults(func=cmd_eval_shapes)
    ef = evaluate.add_parser("fidelity", help="FID / KID of a pipeline's samples for held-back captions beside the "
                                              "floors, and R-precision")
    ef.add_argument("--model", required=True, help="a pipeline: a shipped name (emoji64) or a folder")
    ef.add_argument("--val", required=True, help="an image folder of held-back images with captions")
    ef.add_argument("--train", required=True, help="an image folder of training images (the floor)")
    ef.add_argument("--count", type=int, default=0, help="at most this many val captions (0 = all)")
    ef.add_argument("--num-candidates", type=int, default=None, help="default: the pipeline's")
    ef.add_argument("--batch-size", type=int, default=None)
    ef.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ef.add_argument("--r-precision-captions", type=int, default=100, help="the true caption among this many")
    ef.add_argument("--samples-out", default=None, help="also write the samples as an image folder here")
    ef.add_argument("--out", default=None, help="write the JSON result here")
    ef.set_defaults(func=cmd_eval_fidelity)

    gen = sub.add_parser("generate", help="generate images from a prompt or a prompts file")
    gen.add_argument("prompt", nargs="?", help="the prompt (or use --prompts)")
    gen.add_argument("--prompts", help="a metadata.jsonl (Shapes World layout) or a text file, one prompt a line")
    gen.add_argument("--out", required=True, help="folder for the PNGs, grid.png and metadata.jsonl")
    gen.add_argument("--num-images", type=int, default=1, help="images per prompt")
    _sampling_args(gen)
    gen.set_defaults(func=cmd_generate)

    pipe = sub.add_parser("pipeline", help="assemble a pipeline folder, write its model card").add_subparsers(
        dest="action", required=True)
    assemble = pipe.add_parser("assemble", help="trained components -> one pipeline folder with a model card")
    _stage_args(assemble)
    assemble.set_defaults(func=cmd_pipeline_assemble)
    card = pipe.add_parser("card", help="rewrite DIR/README.md from card.yaml, the components and eval.json")
    card.add_argument("dir")
    card.set_defaults(func=cmd_pipeline_card)
    caps = pipe.add_parser("captions", help="write DIR/captions.txt, the captions `describe` ranks for an image")
    caps.add_argument("dir")
    caps.add_argument("--shapes", type=int, default=0, metavar="N", help="canonical captions of N Shapes World scenes")
    caps.add_argument("--from", dest="files", nargs="*", default=[], metavar="FILE",
                      help="metadata.jsonl files (their text field) or text files (a caption per line)")
    caps.set_defaults(func=cmd_pipeline_captions)
    bench = sub.add_parser("bench", help="sampling and training speed against this machine's measured limits")
    from mini_t2i.bench.suite import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    export = sub.add_parser("export-jax", help="a JAX run's orbax checkpoint -> a PyTorch transformer folder")
    export.add_argument("run_dir", help="the run_dir of `mini-t2i train transformer --backend jax`")
    export.add_argument("--step", type=int, help="which checkpoint (default: the latest)")
    export.add_argument("--out", required=True, help="the folder to write (pipeline assemble's transformer=)")
    export.set_defaults(func=cmd_export_jax)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line and exit 2, not a traceback."""
    from mini_t2i.checkpoint import CheckpointError
    from mini_t2i.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"mini-t2i: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mini-t2i: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
