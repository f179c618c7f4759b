"""Fine-tune a backbone's embedding on a catalog's train split; resumable, CPU-friendly.

    python -m lookalike.finetune --source SOURCE --model efficientnet-lite0 --output models/NAME
    python -m lookalike.finetune --objective instance --output models/NAME     # street-to-shop

The lower blocks stay frozen and their outputs are computed once (a few augmented views per
image); only the top blocks train, against a proxy-based cosine loss. The result is a folder
saved with `save_pretrained` that `--model models/NAME` loads anywhere a backbone is asked for.

`--objective instance` trains each product as its own class instead, on composites of it in the
background photographs of `--backgrounds` (see `lookalike.finetune.instances`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lookalike.cli import add_catalog_options, add_options, catalog_source, option_values
from lookalike.finetune.instances import InstanceConfig, finetune_instances
from lookalike.finetune.training import FinetuneConfig, finetune, push_finetuned
from lookalike.hub import push_exit_code
from lookalike.images import ImageError

# FinetuneConfig fields that are options as they are; their defaults live in the dataclass.
TRAINING_OPTIONS = (
    "model", "epochs", "batch_size", "trainable_blocks", "views", "eval_k", "seed", "split_seed",
    "learning_rate", "proxy_learning_rate", "weight_decay", "temperature", "margin", "test_fraction",
)  # fmt: skip
INSTANCE_OPTIONS = ("backgrounds", "protocol", "scenes_per_product", "category_weight")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lookalike.finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_catalog_options(parser, positional=False)
    parser.add_argument("--output", type=Path, required=True, help="model folder to write (save_pretrained)")
    add_options(parser, FinetuneConfig, TRAINING_OPTIONS)
    parser.add_argument("--objective", choices=["category", "instance"], default="category")
    add_options(parser, InstanceConfig, INSTANCE_OPTIONS)
    parser.add_argument("--no-cache", action="store_true", help="run every block each step (slower, fresh views)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also publish the model folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.objective == "instance":
        return instance_main(args, sys.argv[1:] if argv is None else argv)
    config = FinetuneConfig(
        source=catalog_source(args),
        output=args.output,
        cache_features=not args.no_cache,
        **option_values(args, TRAINING_OPTIONS),
    )
    return run_and_report(
        lambda: finetune(config),
        lambda result, first, last: (
            f"P@{config.eval_k} on the test split: {first.precision_at_k:.4f} pre-trained -> "
            f"{last.precision_at_k:.4f} fine-tuned ({result.n_train} train images, {config.epochs} epochs"
        ),
        args.push_to_hub,
    )


def run_and_report(train, summary, push_to: str | None) -> int:
    """Train, say what changed (`summary` of the result, its first and last epoch) and where the model is."""
    try:
        result = train()
    except (ValueError, OSError, ImageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{summary(result, result.history[0], result.history[-1])}, {result.minutes:.1f} min). "
        f"Saved to {result.output}; use it with --model {result.output}"
    )
    if push_to:
        return push_exit_code(lambda: push_finetuned(result.output, push_to))
    return 0


def instance_main(args, argv: list[str]) -> int:
    # The category recipe's defaults (8 epochs, margin 0.1, ...) are not the instance recipe's: only the
    # options written on the command line override InstanceConfig's own.
    written = {token.split("=")[0] for token in argv}
    given = {
        name: getattr(args, name)
        for name in TRAINING_OPTIONS
        if name in InstanceConfig.__dataclass_fields__ and "--" + name.replace("_", "-") in written
    }
    config = InstanceConfig(
        source=catalog_source(args), output=args.output, **given, **option_values(args, INSTANCE_OPTIONS)
    )
    return run_and_report(
        lambda: finetune_instances(config),
        lambda result, first, last: (
            f"R@{config.eval_k} of validation scenes: {first.recall_at_k:.4f} pre-trained -> {last.recall_at_k:.4f} "
            f"fine-tuned ({len(result.trained_products)} products, {config.epochs} epochs"
        ),
        args.push_to_hub,
    )


if __name__ == "__main__":
    from lookalike.runtime import reexec_with_fast_malloc

    reexec_with_fast_malloc()
    sys.exit(main())
