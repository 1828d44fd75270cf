"""`lmjax train --config NAME [--check] [--restart-from STEP] [key=value ...]`."""

from __future__ import annotations

import argparse

from lmjax import config as config_lib


class _IntermixedParser(argparse.ArgumentParser):
    """Takes options after the KEY=VALUE overrides too (`... train.lr=1e-4 --restart-from 4`),
    which argparse's default parsing refuses once the positional overrides have been read."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


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
    parser.add_argument("--check", action="store_true",
                        help="check the config, run directory, corpus and tokenizer; compile and "
                        "write nothing")
    parser.add_argument("--restart-from", type=int, metavar="STEP", default=None,
                        help="continue from checkpoint STEP with changed optimizer settings "
                        "(train.lr, warmup_steps, ...); later checkpoints are set aside")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.set_defaults(func=run)
    parser.__class__ = _IntermixedParser


def run(args: argparse.Namespace) -> int:
    config = config_lib.load_config(args.config, args.overrides)
    if args.print_config:
        print(config_lib.to_yaml(config), end="")
        return 0
    from lmjax.eval.callback import check_eval_tasks

    check_eval_tasks(config)  # before the tokenizer is trained or anything compiles
    if args.check:
        from lmjax.train.setup import check_config

        print(check_config(config, args.restart_from))
        return 0
    from lmjax.eval.callback import callbacks_for
    from lmjax.train import train

    train(config, callbacks_for(config), restart_from=args.restart_from)
    return 0
