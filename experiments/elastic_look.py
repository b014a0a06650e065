"""What elastic distortions do to digits, before any accuracy is measured.

The strengths of the flagship_elastic round were picked from this picture and
these displacement statistics, not from accuracy:

    python experiments/elastic_look.py --out docs/results/tuning/flagship_elastic/elastic_look.png

Row 1 is ten training images as they are; each further row warps the same ten
by elastic distortions alone (no affine part) at one (alpha, sigma), from one
seeded generator. The printed statistics are over 4,000 random fields.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from mnistlite.augment import AugmentSpec, BatchAugment, random_displacements
from mnistlite.data import load_dataset

SETTINGS = [(0.0, 4.0), (8.0, 3.0), (12.0, 3.0), (16.0, 4.0), (24.0, 5.0), (34.0, 4.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="elastic_look.png")
    args = ap.parse_args()
    data = load_dataset("mnist", val_size=5000, limit_train=2000)
    x = data.train.images[:10].float()
    fill = -data.mean / data.std
    fig, ax = plt.subplots(len(SETTINGS), 10, figsize=(10, len(SETTINGS) * 1.1))
    for i, (alpha, sigma) in enumerate(SETTINGS):
        out = BatchAugment(
            AugmentSpec(elastic_alpha=alpha, elastic_sigma=sigma), fill, torch.Generator().manual_seed(0)
        )(x)
        if alpha:
            d = random_displacements(4000, 28, 28, alpha, sigma, torch.Generator().manual_seed(1))
            norm = d.norm(dim=-1)
            print(
                f"alpha {alpha:g} sigma {sigma:g}: displacement per axis sd {d.std().item():.2f} px, "
                f"length mean {norm.mean().item():.2f} px, max {norm.max().item():.2f} px"
            )
        for k in range(10):
            ax[i, k].imshow(out[k, 0], cmap="gray")
            ax[i, k].axis("off")
        ax[i, 0].set_title(f"alpha={alpha:g} sigma={sigma:g}" if alpha else "original", fontsize=7, loc="left")
    plt.tight_layout()
    plt.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
