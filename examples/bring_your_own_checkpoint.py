"""Bring your own pre-trained backbone: save a timm state dict, fine-tune it with a mask.

FairTune fine-tunes a *pre-trained* ViT. Where timm's hub weights are not
available (no network, or your own in-house pretraining), train or export a
timm model yourself, save its ``state_dict()`` (``.pth`` or ``.safetensors``),
and pass the file as ``checkpoint_path``. The file is loaded the way timm
loads its own weights:

- the position embeddings are **resampled** when the fine-tuning image size
  differs (here pre-trained at 32 px, fine-tuned at 16 px);
- a classification head of another size is **replaced** (here 4 pre-training
  classes, 2 fine-tuning classes); a checkpoint without a head is fine too;
- everything else must match the architecture given in ``model_kwargs``
  (``embed_dim``, ``depth``, ``num_heads``, ``patch_size``).

The script pre-trains a small ViT on a *different* task (the synthetic
:func:`~skfairtune.datasets.make_pretraining_images`, or with
``--source utkface64`` face photos from ``../shared/data`` binned by age),
saves it, checks that linear readout keeps the saved blocks bit for bit, and
compares masks fine-tuned from the checkpoint with the same masks from random
weights on the biased task. ``--save PATH`` keeps the checkpoint, e.g. to pass
it to ``ham10000_search.py --checkpoint PATH`` (same ``--width``/``--depth``).

Takes about 1 min on 2 CPU cores, with either source (``--quick``: about 10 s).

Run: ``python examples/bring_your_own_checkpoint.py [--quick] [--save vit.pth]``
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from skfairtune import FairTuneClassifier, min_group_auc, overall_auc
from skfairtune.datasets import make_biased_images, make_pretraining_images

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_source(name, n_samples, image_size, random_state):
    """Images and labels of the pre-training task."""
    if name == "synthetic":
        data = make_pretraining_images(n_samples, image_size=image_size, n_classes=4, random_state=random_state)
        return data.images, data.target
    import pandas as pd
    from PIL import Image

    root = DATA / "utkface64"
    if not root.is_dir():
        raise SystemExit(f"--source utkface64 needs {root} (it lives in ../shared/data next to the repo).")
    frame = pd.read_csv(root / "labels.csv").sample(frac=1.0, random_state=random_state).head(n_samples)
    images = np.stack([np.asarray(Image.open(root / "images" / f).convert("RGB").resize((image_size, image_size)))
                       for f in frame["file"]])
    return images, np.digitize(frame["age"].to_numpy(), [20, 40, 60])  # 4 age bins


def pretrain(model, images, target, *, epochs, lr=2e-3, batch_size=64, seed=0):
    """A plain PyTorch training loop: nothing here is specific to skfairtune."""
    config = timm.data.resolve_data_config({}, model=model)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    x = (torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255 - mean) / std  # as FairTune normalises
    y = torch.as_tensor(target, dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    # ViTs from scratch need a warm-up; one-cycle = linear warm-up, then cosine decay.
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * -(-len(x) // batch_size), pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        correct = 0
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            flip = torch.rand(len(idx), 1, 1, 1, generator=generator) < 0.5  # light augmentation
            logits = model(torch.where(flip, x[idx].flip(-1), x[idx]))
            loss = F.cross_entropy(logits, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
        print(f"  pre-training epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, "
              f"train accuracy {correct / len(x):.3f}", flush=True)
    return model.eval()


def save_state_dict(state_dict, path):
    """Save as safetensors or with torch.save, by file suffix; both load through checkpoint_path."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state_dict, str(path))
    else:
        torch.save(state_dict, path)


def load_state_dict(path):
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller model, data and epochs (for tests)")
    parser.add_argument("--source", choices=("synthetic", "utkface64"), default="synthetic",
                        help="pre-training task (default: synthetic patterns)")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="default 8 (quick: 2)")
    parser.add_argument("--width", type=int, default=64, help="embed_dim (default 64)")
    parser.add_argument("--depth", type=int, default=4, help="number of blocks (default 4)")
    parser.add_argument("--save", type=Path, default=None, help="keep the checkpoint at this .pth/.safetensors path")
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.depth = 32, 2
    epochs = args.pretrain_epochs or (2 if args.quick else 8)
    arch = dict(patch_size=4, embed_dim=args.width, depth=args.depth, num_heads=2)

    # 1. Pre-train at 32 px on a 4-class task and save the state dict.
    started = time.perf_counter()
    images, target = load_source(args.source, 600 if args.quick else 2000, 32, random_state=0)
    torch.manual_seed(0)
    source_model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                                     num_classes=int(target.max()) + 1, **arch)
    print(f"Pre-training on {args.source} ({len(target)} images, 32 px, {int(target.max()) + 1} classes):")
    pretrain(source_model, images, target, epochs=epochs)
    path = args.save or Path(tempfile.mkdtemp()) / "vit_backbone.pth"
    save_state_dict(source_model.state_dict(), path)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB) after {time.perf_counter() - started:.0f} s")

    # 2. Fine-tune on the biased task at 16 px with a 2-class head: same architecture otherwise.
    data = make_biased_images(500 if args.quick else 1200, image_size=16, random_state=1)
    strata = data.target.astype(str) + data.sensitive_features["group"].astype(str)
    X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
        data.images, data.target, data.sensitive_features["group"], test_size=0.4, stratify=strata,
        random_state=0)

    def classifier(**params):
        return FairTuneClassifier("vit_tiny_patch16_224", model_kwargs=dict(img_size=16, **arch),
                                  batch_size=32, max_epochs=3 if args.quick else 8, class_weight="balanced",
                                  random_state=0, **params)

    linear = classifier(checkpoint_path=path, mask="linear", lr=3e-3).fit(X_train, y_train)
    vit = linear.model_  # the fitted timm model
    saved = load_state_dict(path)
    same = all(torch.equal(vit.state_dict()[k], saved[k]) for k in saved if k.startswith("blocks."))
    print(f"\nLinear readout keeps the saved blocks unchanged: {same}")
    print(f"pos_embed resampled: {tuple(saved['pos_embed'].shape)} -> {tuple(vit.pos_embed.shape)}; "
          f"head replaced: {tuple(saved['head.weight'].shape)} -> {tuple(vit.head.weight.shape)}")

    print("\nFine-tuned on the biased task, held-out AUC (overall / min-group):")
    print(f"  {'mask':<10} {'from checkpoint':>17} {'from random init':>18}")
    for mask, lr in (("linear", 3e-3), ("layernorm", 3e-3), ("full", 1e-3)):
        row = []
        for weights in (dict(checkpoint_path=path), dict(pretrained=False)):
            clf = linear if (mask == "linear" and "checkpoint_path" in weights) else \
                classifier(mask=mask, lr=lr, **weights).fit(X_train, y_train)
            proba = clf.predict_proba(X_test)[:, 1]
            row.append(f"{overall_auc(y_test, proba):.3f} / "
                       f"{min_group_auc(y_test, proba, sensitive_features=s_test):.3f}")
        print(f"  {mask:<10} {row[0]:>17} {row[1]:>18}")
    print(f"\nUse it: FairTuneClassifier('vit_tiny_patch16_224', checkpoint_path={str(path)!r}, "
          f"model_kwargs={dict(img_size=16, **arch)})")


if __name__ == "__main__":
    main()
