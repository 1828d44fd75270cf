"""`lmjax convert from-hf PATH OUT_DIR` (alias `hf`): import a Hugging Face checkpoint as an
lmjax export; `lmjax convert to-hf RUN OUT_DIR`: write a run as a transformers checkpoint."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert checkpoints to and from other libraries",
        description="Import another library's checkpoint as an lmjax export (from-hf), or write "
        "an lmjax run as a transformers checkpoint (to-hf).",
    )
    directions = parser.add_subparsers(dest="direction", metavar="DIRECTION", required=True)
    _register_from_hf(directions)
    _register_to_hf(directions)


def _register_from_hf(directions: argparse._SubParsersAction) -> None:
    from_hf = directions.add_parser(
        "from-hf",
        aliases=["hf"],
        help="import a transformers save_pretrained directory (GPT-2, BERT or T5)",
        description="Write a GPT2LMHeadModel, BertForMaskedLM/BertForPreTraining or "
        "T5ForConditionalGeneration directory (config.json with model.safetensors or "
        "pytorch_model.bin, read with weights_only=True) as an lmjax export (config.yaml, "
        "params/, lmjax_version, tokenizer/ where readable) that `lmjax train --config "
        "OUT_DIR/config.yaml checkpoint.init_from=OUT_DIR` continues from and "
        "`lmjax.runs.open_run` opens. OUT_DIR may be a bucket URI (gs://...).",
    )
    from_hf.add_argument("path", help="the save_pretrained directory")
    from_hf.add_argument("out_dir", help="a new directory for the export")
    from_hf.set_defaults(func=run_from_hf)


def _register_to_hf(directions: argparse._SubParsersAction) -> None:
    to_hf = directions.add_parser(
        "to-hf",
        help="write a run or export as a transformers checkpoint",
        description="Write RUN_OR_EXPORT (a run directory's latest checkpoint, an export of "
        "`lmjax convert`, or anything `lmjax.runs.open_run` opens) as a directory that "
        "transformers' from_pretrained opens without custom code: config.json, "
        "generation_config.json, safetensors (sharded with model.safetensors.index.json above "
        "--shard-size) and the tokenizer. GPT runs become GPT2LMHeadModel (learned positions, "
        "LayerNorm, ungated MLP) or LlamaForCausalLM (RoPE, RMSNorm, SwiGLU), BERT runs "
        "BertForMaskedLM, T5 runs T5ForConditionalGeneration.",
    )
    to_hf.add_argument("run", metavar="RUN_OR_EXPORT", help="the run or export to write")
    to_hf.add_argument("out_dir", metavar="OUT_DIR", help="a new or empty local directory")
    to_hf.add_argument("--dtype", default="float32",
                       help="float32 (default), bfloat16 or float16: the tensors' type on disk")
    to_hf.add_argument("--shard-size", default="2GB",
                       help="largest safetensors file before sharding, e.g. 2GB, 500MB, 64KiB")
    to_hf.add_argument("--overwrite", action="store_true",
                       help="move a non-empty OUT_DIR aside to OUT_DIR.replaced-<time> (never "
                       "deleted) and write the export in its place")
    to_hf.set_defaults(func=run_to_hf)


def run_from_hf(args: argparse.Namespace) -> int:
    from lmjax.runs.importers.hf.export import export

    config = export(args.path, args.out_dir)
    model = config.model
    print(f"wrote {args.out_dir}: {model.arch} with {model.n_layers} layers, d_model {model.d_model}, "
          f"vocabulary {model.vocab_size}; train from it with `lmjax train --config "
          f"{args.out_dir}/config.yaml checkpoint.init_from={args.out_dir}`")
    return 0


def run_to_hf(args: argparse.Namespace) -> int:
    from lmjax.runs.exporters.to_hf import export_to_hf

    exported = export_to_hf(args.run, args.out_dir, dtype=args.dtype, shard_size=args.shard_size,
                            overwrite=args.overwrite)
    if exported.moved_aside:
        print(f"moved the previous contents of {exported.out_dir} to {exported.moved_aside}")
    if exported.tokenizer_skipped:
        print(f"no tokenizer written: {exported.tokenizer_skipped}")
    print(f"wrote {exported.out_dir} as {exported.hf_class} ({len(exported.files)} files); load it "
          f"with transformers.AutoModel*.from_pretrained({str(exported.out_dir)!r})")
    return 0
