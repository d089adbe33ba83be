"""The exported graph of a policy, saved as ONNX or TorchScript, and how it is run and timed.

    feedforward (PPO):       obs (batch, n)                  -> action, targets          (batch, actions)
    recurrent (RecurrentPPO): obs, h, c (layers, batch, hidden) -> action, targets, h_out, c_out

Inside: VecNormalize's (obs - mean) / sqrt(var + eps), clipped to +-clip_obs; the actor (for a recurrent
policy its LSTM, one time step from the state h, c given); its mean action (deterministic), clipped to
[-1, 1]; and the actuator targets, offset + gain * action clipped to the controls' range. The caller keeps
a recurrent policy's state: it feeds h_out, c_out back as h, c and zeroes them when an episode starts (what
SB3's episode_start does).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch as th
from torch import nn

from legkit import LegkitError
from legkit.train.normalization import normalizer_statistics
from legkit.train.policies import ObservationSubset


def is_recurrent(model) -> bool:
    """Whether `model` is an sb3-contrib recurrent policy (RecurrentPPO)."""
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    return isinstance(model.policy, RecurrentActorCriticPolicy)


def actor_indices_of(policy) -> list[int] | None:
    """Indices of the full observation an asymmetric policy's actor reads; None for a symmetric policy."""
    extractor = getattr(policy, "pi_features_extractor", None)
    if isinstance(extractor, ObservationSubset):
        return [int(i) for i in extractor.indices.tolist()]
    return None


def actor_indices(model, obs_dim: int) -> list[int]:
    """Indices of the full observation the model's actor reads (all of them for a symmetric policy)."""
    found = actor_indices_of(model.policy)
    return found if found is not None else list(range(obs_dim))


class ExportedActor(nn.Module):
    """Raw actor observation -> (action, targets): normalization, clipping, actor network, action scaling."""

    def __init__(self, model, norm, actor_indices: list[int], ctrl_offset: np.ndarray, ctrl_gain: np.ndarray,
                 ctrl_low: np.ndarray, ctrl_high: np.ndarray):
        super().__init__()
        policy = model.policy
        f32 = lambda x: th.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        mean, std = normalizer_statistics(norm, actor_indices)
        clip = float(norm.clip_obs) if norm.norm_obs else float("inf")
        # In float64, as VecNormalize computes it, then float32 for the network: parity to the last bit or two.
        self.register_buffer("mean", th.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("std", th.as_tensor(np.asarray(std, dtype=np.float64)))
        self.clip = clip
        # An asymmetric actor's features are its inputs, then its state estimate (if any), and with a mirror
        # the same for the reflected inputs; its mean action may combine both (policy.mean_actions).
        self.asymmetric = actor_indices_of(policy) is not None
        self.policy = policy
        self.register_buffer("offset", f32(ctrl_offset))
        self.register_buffer("gain", f32(ctrl_gain))
        self.register_buffer("low", f32(ctrl_low))
        self.register_buffer("high", f32(ctrl_high))

    def normalized(self, obs: th.Tensor) -> th.Tensor:
        """VecNormalize's view of raw `obs`, float32 for the network."""
        x = (obs.double() - self.mean) / self.std
        if self.clip != float("inf"):
            x = th.clamp(x, -self.clip, self.clip)
        return x.float()

    def targets(self, action: th.Tensor) -> th.Tensor:
        """What the actuators are sent for `action` in [-1, 1]."""
        return th.minimum(th.maximum(self.offset + self.gain * action, self.low), self.high)

    def features(self, x: th.Tensor) -> th.Tensor:
        """The actor network's input for normalized actor inputs `x`: an asymmetric actor's features (its inputs,
        then its state estimate, and with a mirror the reflection beside them); `x` itself otherwise."""
        return self.policy.pi_features_extractor.features(x) if self.asymmetric else x

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        x = self.normalized(obs)
        p = self.policy
        if self.asymmetric:
            mean = p.mean_actions(p.mlp_extractor.forward_actor(self.features(x)))
        else:
            mean = p.action_net(p.mlp_extractor.forward_actor(x))
        action = th.clamp(mean, -1.0, 1.0)
        return action, self.targets(action)


class ExportedRecurrentActor(ExportedActor):
    """Raw observation and LSTM state -> (action, targets, h_out, c_out): RecurrentPPO's actor, one step."""

    def __init__(self, model, norm, ctrl_offset: np.ndarray, ctrl_gain: np.ndarray, ctrl_low: np.ndarray,
                 ctrl_high: np.ndarray):
        lstm = model.policy.lstm_actor
        if lstm.batch_first or lstm.bidirectional:
            raise LegkitError("the recurrent policy's LSTM is batch-first or bidirectional; export steps a "
                              "time-first, one-directional LSTM (sb3-contrib's default)")
        super().__init__(model, norm, actor_indices(model, int(model.observation_space.shape[0])), ctrl_offset,
                         ctrl_gain, ctrl_low, ctrl_high)

    def forward(self, obs: th.Tensor, h: th.Tensor, c: th.Tensor) -> tuple[th.Tensor, ...]:
        p = self.policy
        features = self.features(self.normalized(obs))
        latent, (h_out, c_out) = p.lstm_actor(features.unsqueeze(0), (h, c))  # a sequence of one step
        action = th.clamp(p.action_net(p.mlp_extractor.forward_actor(latent[0])), -1.0, 1.0)
        return action, self.targets(action), h_out, c_out


def recurrent_memory(model) -> list[dict]:
    """policy.json's `recurrent.state` for a RecurrentPPO model: each state input, its output and its shape
    at batch 1 (layers, 1, size); [] for a feedforward model."""
    if not is_recurrent(model):
        return []
    lstm = model.policy.lstm_actor
    h_size = lstm.proj_size or lstm.hidden_size
    return [{"input": "h", "output": "h_out", "shape": [lstm.num_layers, 1, h_size],
             "what": "the LSTM's hidden state"},
            {"input": "c", "output": "c_out", "shape": [lstm.num_layers, 1, lstm.hidden_size],
             "what": "the LSTM's cell state"}]


def _batched(shape: list[int], batch: int) -> tuple[int, ...]:
    return (shape[0], batch, *shape[2:])


def save_graph(module: nn.Module, fmt: str, path: Path, obs_dim: int, memory: list[dict]) -> None:
    """Write `module` to `path` as ONNX (opset 17, dynamic batch) or TorchScript (traced)."""
    example = (th.zeros(1, obs_dim), *[th.zeros(*m["shape"]) for m in memory])
    module.eval()
    with th.no_grad(), warnings.catch_warnings():
        # nn.LSTM's shape checks are Python comparisons a trace records as constants (the TracerWarnings); torch
        # also warns about any LSTM export at a batch other than 1 unless h0, c0 are inputs, as they are here. The
        # parity check steps the saved graph at batch 50.
        warnings.filterwarnings("ignore", category=th.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        if fmt == "torchscript":
            th.jit.save(th.jit.trace(module, example), str(path))
            return
        inputs = ["obs", *[m["input"] for m in memory]]
        outputs = ["action", "targets", *[m["output"] for m in memory]]
        axes = {name: {0: "batch"} for name in ("obs", "action", "targets")}
        axes.update({name: {1: "batch"} for m in memory for name in (m["input"], m["output"])})
        th.onnx.export(module, example, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                       opset_version=17, dynamo=False)


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_graph(fmt: str, path: Path, obs: np.ndarray) -> np.ndarray:
    """Actions of the saved feedforward graph (read back from disk) for `obs` (samples, n)."""
    if fmt == "torchscript":
        with th.no_grad():
            return th.jit.load(str(path))(th.as_tensor(obs, dtype=th.float32))[0].numpy()
    session = _session(path)
    return np.concatenate([session.run(["action"], {"obs": obs[i:i + 1000]})[0] for i in range(0, len(obs), 1000)])


def run_sequences(fmt: str, path: Path, obs: np.ndarray, starts: np.ndarray, memory: list[dict]) -> np.ndarray:
    """Actions (steps, robots, actions) of the saved recurrent graph stepped along sequences `obs` (steps, robots,
    n) with its state carried from step to step and zeroed where `starts` (steps, robots) marks an episode start."""
    steps, robots = starts.shape
    state = [np.zeros(_batched(m["shape"], robots), dtype=np.float32) for m in memory]
    if fmt == "torchscript":
        module = th.jit.load(str(path))

        def call(x, *s):
            with th.no_grad():
                return [t.numpy() for t in module(th.as_tensor(x), *[th.as_tensor(v) for v in s])]
    else:
        session = _session(path)
        names = ["obs", *[m["input"] for m in memory]]

        def call(x, *s):
            return session.run(None, dict(zip(names, (x, *s))))
    actions = []
    for t in range(steps):
        for s in state:
            s[:, starts[t]] = 0.0
        action, _, *state = call(np.ascontiguousarray(obs[t], dtype=np.float32), *state)
        actions.append(action)
    return np.stack(actions)


def onnx_latency(path: Path, obs_dim: int, runs: int = 5000) -> dict:
    """Median and 99th percentile (µs) of one batch-1 onnxruntime call on one thread (a recurrent graph with its
    state inputs)."""
    session = _session(path)
    x = {i.name: np.zeros([1 if not isinstance(k, int) else k for k in i.shape], dtype=np.float32)
         for i in session.get_inputs()}
    if x["obs"].shape != (1, obs_dim):
        raise LegkitError(f"{path} takes observations of shape {x['obs'].shape}, not (1, {obs_dim})")
    return _timed(lambda: session.run(None, x), runs)


def runtime_latency(folder: Path, runs: int = 5000) -> dict:
    """Median and 99th percentile (µs) of one whole legkit.runtime step (sensor dict in, joint targets out)."""
    from legkit.runtime import PolicyRuntime

    rt = PolicyRuntime(folder)
    sensors = rt.example_readings()
    return _timed(lambda: rt.step(sensors), runs)


def _timed(call, runs: int) -> dict:
    for _ in range(200):
        call()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        call()
        times[i] = time.perf_counter() - t0
    return {"median_us": float(np.median(times) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6), "runs": runs}
