"""Fine-tune a backbone on a catalog train split: training loop, trunk, losses, augmentation."""
