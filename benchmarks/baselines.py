"""The baselines of benchmarks/fair.py, each run as its own process: what users write today.

    python benchmarks/baselines.py keras --arch mlp --hidden-dim 512 --latent-dim 2 --epochs 6
    KERAS_BACKEND=jax python benchmarks/baselines.py keras --arch conv --epochs 6
    python benchmarks/baselines.py torch --arch mlp --hidden-dim 400 --latent-dim 20 --epochs 6

keras: the tutorial VAE (benchmarks/tutorial.py's layers and train_step; on engines other than
TensorFlow its loss in compute_loss) with numpy arrays into `fit` and a default `compile`, on the
engine KERAS_BACKEND names. torch: PyTorch eager twins with torch.set_num_threads(cores):
pytorch/examples' MLP VAE (fc1, fc21/fc22, fc3, fc4) and the conv VAE of the conv preset
(Conv32-MaxPool x2, Dense 512, latent, Dense 512, Dense 7x7x32, Upsample+Conv32 x2, Conv 1).
All train the same loss as vae-cli (Bernoulli reconstruction summed over pixels plus KL, averaged
over the batch) with Adam 1e-3 on 4,500 of the bundled digits, batch 128, and print Keras-style
"Epoch i/N" lines (fair.py times the phases of a run from them) and one JSON line at the end.
Only the framework being measured is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/baselines.py`: import this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import digits  # noqa: E402

BATCH = 128


def keras_baseline(args) -> dict:
    import math

    import keras

    from benchmarks.tutorial import tutorial_models, tutorial_vae

    x = digits.training_images(args.train_digits)
    keras.utils.set_random_seed(0)
    encoder, decoder = tutorial_models(args.arch, args.hidden_dim, args.latent_dim)
    vae = tutorial_vae(encoder, decoder)
    starts, seconds = [], []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: starts.append(time.perf_counter()),
                                           on_epoch_end=lambda *_: seconds.append(time.perf_counter() - starts[-1]))
    loss = None
    if args.epochs:
        history = vae.fit(x, epochs=args.epochs, batch_size=BATCH, verbose=2, callbacks=[timer]).history
        loss = (history.get("total_loss") or history["loss"])[-1]
    return {"framework": f"keras {keras.__version__} on {keras.backend.backend()}", "n_train": len(x),
            "parameters": sum(math.prod(w.shape) for w in encoder.trainable_weights + decoder.trainable_weights),
            "epoch_seconds": seconds, "last_loss": None if loss is None else float(loss)}


def torch_models(arch: str, hidden_dim: int, latent_dim: int):
    """(encode, decode, modules): encode(x) -> (mu, logvar), decode(z) -> x_hat in (0, 1), x as (B, 1, 28, 28)."""
    from torch import nn

    if arch == "mlp":  # pytorch/examples vae/main.py, sizes from the arguments
        fc1 = nn.Linear(784, hidden_dim)
        fc21, fc22 = nn.Linear(hidden_dim, latent_dim), nn.Linear(hidden_dim, latent_dim)
        fc3, fc4 = nn.Linear(latent_dim, hidden_dim), nn.Linear(hidden_dim, 784)

        def encode(x):
            h = fc1(x.flatten(1)).relu()
            return fc21(h), fc22(h)

        def decode(z):
            return fc4(fc3(z).relu()).sigmoid().view(-1, 1, 28, 28)

        return encode, decode, [fc1, fc21, fc22, fc3, fc4]
    features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(7 * 7 * 32, hidden_dim), nn.ReLU())
    mu_head, logvar_head = nn.Linear(hidden_dim, latent_dim), nn.Linear(hidden_dim, latent_dim)
    up = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 7 * 7 * 32), nn.ReLU(),
                       nn.Unflatten(1, (32, 7, 7)), nn.Upsample(scale_factor=2), nn.Conv2d(32, 32, 3, padding=1),
                       nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(32, 1, 3, padding=1), nn.Sigmoid())

    def encode(x):
        h = features(x)
        return mu_head(h), logvar_head(h)

    return encode, up, [features, mu_head, logvar_head, up]


def torch_baseline(args) -> dict:
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    x = torch.from_numpy(digits.training_images(args.train_digits).transpose(0, 3, 1, 2).copy())
    encode, decode, modules = torch_models(args.arch, args.hidden_dim, args.latent_dim)
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    steps = -(-len(x) // BATCH)
    seconds, loss = [], None
    for epoch in range(args.epochs):
        print(f"Epoch {epoch + 1}/{args.epochs}", flush=True)
        t0 = time.perf_counter()
        total = 0.0
        for idx in torch.randperm(len(x)).split(BATCH):
            xb = x[idx]
            mu, logvar = encode(xb)
            x_hat = decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
            bce = F.binary_cross_entropy(x_hat, xb, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / len(xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        seconds.append(time.perf_counter() - t0)
        print(f"{steps}/{steps} - {seconds[-1]:.0f}s - loss: {total / len(x):.4f}", flush=True)
    return {"framework": f"torch {torch.__version__} eager, {torch.get_num_threads()} threads", "n_train": len(x),
            "parameters": sum(p.numel() for p in params), "epoch_seconds": seconds,
            "last_loss": float(loss) if loss is not None else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/baselines.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("framework", choices=("keras", "torch"))
    parser.add_argument("--arch", choices=("mlp", "conv"), default="mlp")
    parser.add_argument("--hidden-dim", type=int, default=512)
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="0: build the model and report its size only")
    parser.add_argument("--train-digits", type=int, default=digits.TRAIN_DIGITS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    report = (keras_baseline if args.framework == "keras" else torch_baseline)(args)
    print(json.dumps({"baseline": args.framework, "arch": args.arch, "epochs": args.epochs, **report}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
