"""`lmjax train --config NAME [key=value ...]`."""

from __future__ import annotations

import argparse

from lmjax import config as config_lib


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a named config",
        description="Train a model. Overrides are dotted keys, e.g. train.steps=50 model.d_model=256 "
        "mesh.fsdp=2. A run directory that already holds this run is resumed from its latest "
        f"checkpoint. Named configs: {', '.join(config_lib.named_configs())}.",
    )
    parser.add_argument("--config", required=True, help="a named config or a YAML file")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_lib.load_config(args.config, args.overrides)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return 0
    from lmjax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()
    from lmjax.train.loop import train

    train(config)
    return 0
