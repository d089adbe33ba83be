"""Behaviour cloning: fit a policy's mean action to demonstrated actions (MSE), on normalized observations.

Two actors, each built with the module names and layer layout of the SB3 policy it will be copied into
(legkit.imitate.warmstart), so that the copy is a plain state-dict copy:

    mlp   SB3 ActorCriticPolicy:              mlp_extractor.policy_net (Linear+act per net_arch) -> action_net
    lstm  sb3-contrib RecurrentActorCriticPolicy: lstm_actor (nn.LSTM, sequence-first as sb3-contrib calls it)
                                              -> mlp_extractor.policy_net -> action_net

The LSTM learns by truncated backpropagation through time: a batch is `batch_size // seq_len` whole
training episodes run side by side from a zero state (the state at every episode start, as in
deployment), cut into chunks of `seq_len` steps; the state is carried from chunk to chunk, gradients are
not. Validation runs whole episodes from a zero state, as the robot will.

Run folder `out`: best.pt (lowest validation loss) and final.pt (last epoch), each a torch file of plain
data (load_bc; torch.load(weights_only=True) reads it):
    {"format": "legkit-bc", "version": 1, "arch": {kind, obs_dim, act_dim, net_arch, activation,
     lstm_hidden, lstm_layers}, "state_dict": ..., "normalizer": {mean, var, count, clip, epsilon},
     "meta": the demos' meta, "info": {epoch, train_loss, val_loss, train_episodes, val_episodes}}
and losses.csv (epoch,train_loss,val_loss; epochs count from 1) and losses.png. With resume=True also
checkpoint.pt, the training's state after every epoch (weights, optimizer, random generator, losses), from
which a killed training continues to the same result.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from legkit import LegkitError
from legkit.imitate.demos import Demos
from legkit.imitate.normalizer import MIN_STD, ObsNormalizer
from legkit.train.trainer import ACTIVATION

KINDS = ("mlp", "lstm")
DEFAULT_NET_ARCH = {"mlp": (128, 128), "lstm": (32,)}
"""Hidden layers of mlp_extractor.policy_net when train_bc is given none: legkit's PPO default for the MLP,
the seed project's Dense(32) after the LSTM."""
FORMAT, VERSION = "legkit-bc", 1
CHECKPOINT = "checkpoint.pt"
"""out/checkpoint.pt: where train_bc(resume=True) keeps its state after each epoch."""


@dataclass(frozen=True)
class BCArch:
    """What a cloned actor is: enough to rebuild it, and to check an SB3 policy against it."""

    kind: str
    """"mlp" or "lstm"."""
    obs_dim: int
    act_dim: int
    net_arch: tuple[int, ...]
    """Hidden layer widths of mlp_extractor.policy_net."""
    activation: str
    """One of legkit.train.trainer.ACTIVATION (elu, tanh, relu)."""
    lstm_hidden: int = 64
    """LSTM hidden size (lstm only)."""
    lstm_layers: int = 1
    """LSTM layers (lstm only)."""
    inputs: tuple[str, ...] = ()
    """The observation terms the clone reads (empty: all). The others still enter the network, through weights
    held at zero while cloning, so a policy warm-started from the clone acts as the clone and fine-tuning can
    learn to read them."""


class _Extractor(nn.Module):
    """Holds `policy_net` so that its parameters are named mlp_extractor.policy_net.* as in SB3."""

    def __init__(self, policy_net: nn.Sequential):
        super().__init__()
        self.policy_net = policy_net


def _policy_net(size: int, arch: BCArch) -> tuple[nn.Sequential, int]:
    """SB3 MlpExtractor's policy_net: Linear then activation for each width. Returns it and its output size."""
    layers: list[nn.Module] = []
    for width in arch.net_arch:
        layers += [nn.Linear(size, int(width)), ACTIVATION[arch.activation]()]
        size = int(width)
    return nn.Sequential(*layers), size


class MlpActor(nn.Module):
    """SB3 ActorCriticPolicy's actor: normalized obs (batch, obs_dim) -> mean action (batch, act_dim)."""

    def __init__(self, arch: BCArch):
        super().__init__()
        net, size = _policy_net(arch.obs_dim, arch)
        self.mlp_extractor = _Extractor(net)
        self.action_net = nn.Linear(size, arch.act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.action_net(self.mlp_extractor.policy_net(obs))


class LstmActor(nn.Module):
    """sb3-contrib RecurrentActorCriticPolicy's actor: normalized obs (seq, batch, obs_dim) and LSTM state
    ((layers, batch, hidden) twice, or None for zeros) -> mean actions (seq, batch, act_dim) and the new state."""

    def __init__(self, arch: BCArch):
        super().__init__()
        self.lstm_actor = nn.LSTM(arch.obs_dim, arch.lstm_hidden, num_layers=arch.lstm_layers)
        net, size = _policy_net(arch.lstm_hidden, arch)
        self.mlp_extractor = _Extractor(net)
        self.action_net = nn.Linear(size, arch.act_dim)

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        latent, state = self.lstm_actor(obs, state)
        return self.action_net(self.mlp_extractor.policy_net(latent)), state


def input_mask(obs_layout: list, inputs: tuple[str, ...], obs_dim: int) -> np.ndarray:
    """(obs_dim,) bool: the observation entries of the terms `inputs` (all of them when empty); a LegkitError
    names an input that is not a term of `obs_layout` ([name, start, size] entries)."""
    if not inputs:
        return np.ones(obs_dim, dtype=bool)
    terms = {str(name): (int(start), int(size)) for name, start, size in obs_layout}
    unknown = [name for name in inputs if name not in terms]
    if unknown:
        raise LegkitError(f"train_bc: inputs {', '.join(unknown)} are not observation terms of the demos; valid: "
                          f"{', '.join(terms)}")
    read = np.zeros(obs_dim, dtype=bool)
    for name in inputs:
        start, size = terms[name]
        read[start:start + size] = True
    return read


def first_layer_weight(net: nn.Module) -> torch.Tensor:
    """The weight (out, obs_dim) through which an actor reads its observation: the LSTM's input weights, or the
    MLP's first Linear."""
    return net.lstm_actor.weight_ih_l0 if isinstance(net, LstmActor) else net.mlp_extractor.policy_net[0].weight


def build_actor(arch: BCArch) -> nn.Module:
    """A freshly initialised actor for `arch`."""
    return MlpActor(arch) if arch.kind == "mlp" else LstmActor(arch)


@dataclass
class BCPolicy:
    """A cloned actor with the normalizer of its inputs and the demos' meta (obs_layout, gaits, control_dt...)."""

    arch: BCArch
    net: nn.Module
    normalizer: ObsNormalizer
    meta: dict
    info: dict = field(default_factory=dict)
    """Where it came from: epoch, losses, the training and validation episodes."""


@dataclass
class BCResult:
    """What train_bc did. Epochs count from 1: train_losses[best_epoch - 1] is the best epoch's."""

    train_losses: list[float]
    val_losses: list[float]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    policy: BCPolicy
    """The best epoch's policy (as in best.pt)."""
    out: Path
    train_episodes: list[int]
    val_episodes: list[int]


def save_bc(path: Path, policy: BCPolicy) -> Path:
    """Write `policy` to `path` (atomically) in the best.pt / final.pt format."""
    arch = {**asdict(policy.arch), "net_arch": list(policy.arch.net_arch), "inputs": list(policy.arch.inputs)}
    data = {"format": FORMAT, "version": VERSION, "arch": arch,
            "state_dict": policy.net.state_dict(), "normalizer": policy.normalizer.to_dict(), "meta": policy.meta,
            "info": policy.info}
    return _atomic_torch_save(Path(path), data)


def _atomic_torch_save(path: Path, data: dict) -> Path:
    """torch.save `data` to `path` so that a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_checkpoint(path: Path, settings: str) -> dict | None:
    """The state in checkpoint.pt at `path` (None when there is none), checked to be of a training with `settings`."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zipfile and torch raise their own types
        raise LegkitError(f"BC checkpoint '{path}' is corrupt or unreadable ({type(exc).__name__}: {exc}); "
                          "delete it to train from the start") from None
    if saved.get("settings") != settings:
        raise LegkitError(f"BC checkpoint '{path}' was written by a training with other settings (or other demos); "
                          "delete it to train from the start")
    return saved


def load_bc(path: Path | str) -> BCPolicy:
    """Read a BC policy written by train_bc (best.pt or final.pt)."""
    path = Path(path)
    if not path.is_file():
        raise LegkitError(f"BC policy file '{path}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zipfile and torch raise their own types
        why = (str(exc).strip().splitlines() or [""])[0]  # torch's messages run over several lines: one line here
        raise LegkitError(f"BC policy file '{path}' is corrupt or unreadable ({type(exc).__name__}: {why})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LegkitError(f"'{path}' is not a legkit BC policy (best.pt / final.pt written by train_bc)")
    if data.get("version") != VERSION:
        raise LegkitError(f"BC policy file '{path}' has format version {data.get('version')}; "
                          f"this legkit reads {VERSION}")
    arch = BCArch(**{**data["arch"], "net_arch": tuple(int(w) for w in data["arch"]["net_arch"]),
                     "inputs": tuple(str(n) for n in data["arch"].get("inputs", ()))})
    net = build_actor(arch)
    net.load_state_dict(data["state_dict"])
    net.eval()
    return BCPolicy(arch, net, ObsNormalizer.from_dict(data["normalizer"]), data["meta"], data["info"])


def split_episodes(demos: Demos, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Episode ids for training and for validation: whole episodes, about `val_fraction` of each gait's episodes
    (an episode's gait is its most frequent one) in validation, at least one episode on each side."""
    if not 0.0 < val_fraction < 1.0:
        raise LegkitError(f"val_fraction must be in (0, 1), got {val_fraction}")
    gaits = demos.episode_gaits()
    if len(gaits) < 2:
        raise LegkitError(f"behaviour cloning validates on whole episodes and needs at least 2, the demos have "
                          f"{len(gaits)}")
    rng = np.random.default_rng(seed)
    by_gait: dict[int, list[int]] = {}
    for e, g in gaits.items():
        by_gait.setdefault(g, []).append(e)
    train, val = [], []
    for g in sorted(by_gait):
        eps = rng.permutation(np.array(sorted(by_gait[g])))
        n_val = min(int(np.floor(val_fraction * len(eps) + 0.5)), len(eps) - 1)
        val += eps[:n_val].tolist()
        train += eps[n_val:].tolist()
    if not val:  # every gait has too few episodes for its share: take one from the gait with the most
        biggest = max(by_gait, key=lambda g: len(by_gait[g]))
        moved = next(e for e in rng.permutation(np.array(sorted(by_gait[biggest]))).tolist() if e in train)
        train.remove(moved)
        val.append(moved)
    return sorted(train), sorted(val)


def _padded(demos: Demos, normalizer: ObsNormalizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Episodes side by side, zero-padded at their ends: obs (steps, episodes, obs_dim), actions
    (steps, episodes, act_dim) and a mask (steps, episodes) that is 1 on real steps."""
    eps = demos.episodes()
    steps = max(b - a for _, a, b in eps)
    obs = np.zeros((steps, len(eps), demos.obs_dim), np.float32)
    act = np.zeros((steps, len(eps), demos.act_dim), np.float32)
    mask = np.zeros((steps, len(eps)), np.float32)
    norm = normalizer(demos.obs)
    for i, (_, a, b) in enumerate(eps):
        obs[: b - a, i], act[: b - a, i], mask[: b - a, i] = norm[a:b], demos.action[a:b], 1.0
    return torch.from_numpy(obs), torch.from_numpy(act), torch.from_numpy(mask)


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the action entries of the steps where `mask` is 1."""
    return (torch.square(pred - target).mean(dim=-1) * mask).sum() / mask.sum().clamp(min=1.0)


def _check_args(kind: str, epochs: int, batch_size: int, lr: float, seq_len: int, patience: int,
                activation: str, net_arch: tuple[int, ...], lstm_hidden: int) -> None:
    checks = [(kind in KINDS, "kind", kind, f"one of {', '.join(KINDS)}"), (epochs >= 1, "epochs", epochs, ">= 1"),
              (batch_size >= 1, "batch_size", batch_size, ">= 1"), (lr > 0, "lr", lr, "> 0"),
              (seq_len >= 1, "seq_len", seq_len, ">= 1"),
              (patience >= 0, "patience", patience, ">= 0 (0: never stop early)"),
              (activation in ACTIVATION, "activation", activation, f"one of {', '.join(ACTIVATION)}"),
              (all(int(w) >= 1 for w in net_arch), "net_arch", list(net_arch), "layer widths >= 1"),
              (lstm_hidden >= 1, "lstm_hidden", lstm_hidden, ">= 1")]
    for ok, name, value, valid in checks:
        if not ok:
            raise LegkitError(f"train_bc: {name} = {value!r} is invalid; it must be {valid}")


def train_bc(demos: Demos, kind: str = "lstm", *, out: Path, epochs: int = 300, batch_size: int = 1024,
             lr: float = 1e-3, seq_len: int = 32, val_fraction: float = 0.2, patience: int = 20, seed: int = 0,
             progress: Callable[[int, float, float], None] | None = None, net_arch: tuple[int, ...] | None = None,
             activation: str = "elu", lstm_hidden: int = 64, min_std: float = MIN_STD,
             max_grad_norm: float = 1.0, resume: bool = False, inputs: tuple[str, ...] | None = None) -> BCResult:
    """Clone `demos` into a `kind` ("mlp" or "lstm") actor with Adam on the MSE of its mean action; write
    best.pt, final.pt, losses.csv and losses.png to `out`.

    Whole episodes are split (stratified by gait) into training and validation; the normalizer comes from
    the training episodes. Training stops after `patience` epochs without a lower validation loss (0: runs
    all `epochs`). An LSTM minibatch is batch_size // seq_len episodes in chunks of seq_len steps; an MLP
    minibatch is batch_size samples. `progress(epoch, train_loss, val_loss)` is called after every epoch.
    With `resume`, out/checkpoint.pt is written after every epoch, and a training that finds one continues
    from it (a LegkitError if it was written with other settings; `epochs` and `patience` may differ).
    `inputs` names the observation terms the clone may read (None or empty: all); the first layer's weights
    from every other input are zero and stay zero (BCArch.inputs).
    """
    net_arch = tuple(int(w) for w in (DEFAULT_NET_ARCH.get(kind, ()) if net_arch is None else net_arch))
    _check_args(kind, epochs, batch_size, lr, seq_len, patience, activation, net_arch, lstm_hidden)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_ids, val_ids = split_episodes(demos, val_fraction, seed)
    train_demos, val_demos = demos.select(train_ids), demos.select(val_ids)
    normalizer = ObsNormalizer.fit(train_demos.obs, min_std)
    inputs = tuple(inputs or ())
    read = input_mask(demos.meta["obs_layout"], inputs, demos.obs_dim)
    arch = BCArch(kind, demos.obs_dim, demos.act_dim, net_arch, activation, lstm_hidden, inputs=inputs)
    split = {"train_episodes": train_ids, "val_episodes": val_ids}

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's torch RNG
        torch.manual_seed(seed)
        net = build_actor(arch)
    if inputs:  # the first layer's weights from the other inputs: zero, and no gradient ever moves them
        first = first_layer_weight(net)
        keep = torch.from_numpy(read.astype(np.float32))
        with torch.no_grad():
            first.mul_(keep)
        first.register_hook(lambda grad: grad * keep)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def step(loss: torch.Tensor) -> None:
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
        opt.step()

    if kind == "mlp":
        x_tr, y_tr = torch.from_numpy(normalizer(train_demos.obs)), torch.from_numpy(train_demos.action)
        x_va, y_va = torch.from_numpy(normalizer(val_demos.obs)), torch.from_numpy(val_demos.action)

        def train_epoch() -> float:
            total = 0.0
            for rows in torch.randperm(len(x_tr), generator=gen).split(batch_size):
                loss = torch.square(net(x_tr[rows]) - y_tr[rows]).mean()
                step(loss)
                total += loss.item() * len(rows)
            return total / len(x_tr)

        def val_loss() -> float:
            return torch.square(net(x_va) - y_va).mean().item()
    else:
        x_tr, y_tr, m_tr = _padded(train_demos, normalizer)
        x_va, y_va, m_va = _padded(val_demos, normalizer)
        lengths = m_tr.sum(dim=0).long()
        n_seq = max(1, batch_size // seq_len)

        def train_epoch() -> float:
            total, count = 0.0, 0.0
            for group in torch.randperm(x_tr.shape[1], generator=gen).split(n_seq):
                x, y, m, state = x_tr[:, group], y_tr[:, group], m_tr[:, group], None
                for t0 in range(0, int(lengths[group].max()), seq_len):
                    t1 = t0 + seq_len
                    pred, state = net(x[t0:t1], state)
                    loss = _masked_mse(pred, y[t0:t1], m[t0:t1])
                    step(loss)
                    state = (state[0].detach(), state[1].detach())  # carry the state, not the gradient
                    total += loss.item() * m[t0:t1].sum().item()
                    count += m[t0:t1].sum().item()
            return total / count

        def val_loss() -> float:
            return _masked_mse(net(x_va)[0], y_va, m_va).item()

    train_losses: list[float] = []
    val_losses: list[float] = []
    best_val, best_epoch, best_state, stopped_early = float("inf"), 0, None, False
    # what a checkpoint must have been trained with to be continued: all but how long to train
    settings = json.dumps({"arch": asdict(arch), "batch_size": batch_size, "lr": lr, "seq_len": seq_len,
                           "min_std": min_std, "max_grad_norm": max_grad_norm, "seed": seed, "rows": len(demos.obs),
                           **split})
    saved = _read_checkpoint(out / CHECKPOINT, settings) if resume else None
    if saved is not None:
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        gen.set_state(saved["gen"])
        train_losses, val_losses = list(saved["train_losses"]), list(saved["val_losses"])
        best_val, best_epoch, best_state = saved["best_val"], saved["best_epoch"], saved["best_state"]
        stopped_early = saved["stopped_early"]
    for epoch in range(epochs + 1 if stopped_early else len(train_losses) + 1, epochs + 1):
        net.train()
        train_losses.append(train_epoch())
        net.eval()
        with torch.no_grad():
            val_losses.append(val_loss())
        if progress is not None:
            progress(epoch, train_losses[-1], val_losses[-1])
        if not (np.isfinite(train_losses[-1]) and np.isfinite(val_losses[-1])):
            raise LegkitError(f"behaviour cloning diverged at epoch {epoch} (training loss {train_losses[-1]}, "
                              f"validation loss {val_losses[-1]}); lower lr (now {lr:g})")
        stop = False
        if val_losses[-1] < best_val:
            best_val, best_epoch = val_losses[-1], epoch
            best_state = copy.deepcopy(net.state_dict())
            info = {"epoch": epoch, "train_loss": train_losses[-1], "val_loss": val_losses[-1], **split}
            save_bc(out / "best.pt", BCPolicy(arch, net, normalizer, demos.meta, info))
        elif patience and epoch - best_epoch >= patience:
            stopped_early, stop = epoch < epochs, True
        if resume:
            _atomic_torch_save(out / CHECKPOINT, {
                "settings": settings, "net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                "train_losses": train_losses, "val_losses": val_losses, "best_val": best_val,
                "best_epoch": best_epoch, "best_state": best_state, "stopped_early": stopped_early})
        if stop:
            break

    net.eval()
    info = {"epoch": len(train_losses), "train_loss": train_losses[-1], "val_loss": val_losses[-1], **split}
    save_bc(out / "final.pt", BCPolicy(arch, net, normalizer, demos.meta, info))
    write_losses(out, train_losses, val_losses, best_epoch, kind)
    best = build_actor(arch)
    best.load_state_dict(best_state)
    best.eval()
    best_info = {"epoch": best_epoch, "train_loss": train_losses[best_epoch - 1], "val_loss": best_val, **split}
    return BCResult(train_losses, val_losses, best_epoch, best_val, stopped_early,
                    BCPolicy(arch, best, normalizer, demos.meta, best_info), out, train_ids, val_ids)


def write_losses(out: Path, train_losses: list[float], val_losses: list[float], best_epoch: int, kind: str) -> None:
    """losses.csv (epoch,train_loss,val_loss) and losses.png (both curves, log scale, the best epoch marked)."""
    with open(out / "losses.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "train_loss", "val_loss"])
        writer.writerows([e, f"{t:.8g}", f"{v:.8g}"] for e, (t, v) in enumerate(zip(train_losses, val_losses), 1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(train_losses) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(epochs, train_losses, label="training")
    ax.plot(epochs, val_losses, label="validation")
    ax.axvline(best_epoch, color="0.5", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("action MSE")
    ax.set_title(f"behaviour cloning ({kind})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=100)
    plt.close(fig)
