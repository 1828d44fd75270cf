"""`lmjax convert hf PATH OUT_DIR`: import a Hugging Face checkpoint as an lmjax export."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="import checkpoints from other libraries",
        description="Write another library's checkpoint as an lmjax export (config.yaml, params/, "
        "lmjax_version, tokenizer/ where readable) that `lmjax train --config OUT_DIR/config.yaml "
        "checkpoint.init_from=OUT_DIR` continues from and `lmjax.runs.open_run` opens. OUT_DIR may "
        "be a bucket URI (gs://...).",
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    hf = sources.add_parser(
        "hf",
        help="a transformers save_pretrained directory (GPT-2, BERT or T5)",
        description="Import a GPT2LMHeadModel, BertForMaskedLM/BertForPreTraining or "
        "T5ForConditionalGeneration directory (config.json with model.safetensors or "
        "pytorch_model.bin, read with weights_only=True).",
    )
    hf.add_argument("path", help="the save_pretrained directory")
    hf.add_argument("out_dir", help="a new directory for the export")
    hf.set_defaults(func=run_hf)


def run_hf(args: argparse.Namespace) -> int:
    from lmjax.runs.importers.hf.export import export

    config = export(args.path, args.out_dir)
    model = config.model
    print(f"wrote {args.out_dir}: {model.arch} with {model.n_layers} layers, d_model {model.d_model}, "
          f"vocabulary {model.vocab_size}; train from it with `lmjax train --config "
          f"{args.out_dir}/config.yaml checkpoint.init_from={args.out_dir}`")
    return 0
