"""Fine-tune a backbone's embedding on a catalog's train split; resumable, CPU-friendly.

    python -m lookalike.finetune --source SOURCE --model efficientnet-lite0 --output models/NAME

The lower blocks stay frozen and their outputs are computed once (a few augmented views per
image); only the top blocks train, against a proxy-based cosine loss. The result is a folder
saved with `save_pretrained` that `--model models/NAME` loads anywhere a backbone is asked for.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lookalike.catalog import CatalogSource
from lookalike.finetune.training import FinetuneConfig, finetune, push_finetuned
from lookalike.hub import push_exit_code
from lookalike.images import ImageError


def main(argv: list[str] | None = None) -> int:
    defaults = FinetuneConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="image folder or Hub dataset id (default: bundled catalog)")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--split-column", help="column holding an official 'train'/'test' split to keep")
    parser.add_argument("--model", default=defaults.model, help="registry name, Hub id or model folder")
    parser.add_argument("--output", type=Path, required=True, help="model folder to write (save_pretrained)")
    for name in ["epochs", "batch_size", "trainable_blocks", "views", "eval_k", "seed", "split_seed"]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ["learning_rate", "proxy_learning_rate", "weight_decay", "temperature", "margin", "test_fraction"]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    parser.add_argument("--no-cache", action="store_true", help="run every block each step (slower, fresh views)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also publish the model folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = CatalogSource(args.source, args.image_column, args.label_column, split_column=args.split_column)
    knobs = {name: getattr(args, name) for name in FinetuneConfig.__dataclass_fields__ if hasattr(args, name)}
    knobs.pop("source", None)
    config = FinetuneConfig(**{**knobs, "source": source, "cache_features": not args.no_cache})
    try:
        result = finetune(config)
    except (ValueError, OSError, ImageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    first, last = result.history[0], result.history[-1]
    print(
        f"P@{config.eval_k} on the test split: {first.precision_at_k:.4f} pre-trained -> {last.precision_at_k:.4f} "
        f"fine-tuned ({result.n_train} train images, {config.epochs} epochs, {result.minutes:.1f} min). "
        f"Saved to {result.output}; use it with --model {result.output}"
    )
    if args.push_to_hub:
        return push_exit_code(lambda: push_finetuned(result.output, args.push_to_hub))
    return 0


if __name__ == "__main__":
    from lookalike.runtime import reexec_with_fast_malloc

    reexec_with_fast_malloc()
    sys.exit(main())
