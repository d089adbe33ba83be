"""legkit: train simulated legged robots with reinforcement learning on MuJoCo, fast on a CPU."""

__version__ = "0.1.0"


def _torch_cache_outside_tmp() -> None:
    """Torch's optimizer step makes an (empty) torchinductor cache folder, by default in the system temp
    directory; legkit keeps it in the user's cache folder instead, unless TORCHINDUCTOR_CACHE_DIR is set."""
    import os
    from pathlib import Path

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "legkit" / "torchinductor"))


_torch_cache_outside_tmp()


EVAL_SEED = 12345
"""The seed of `legkit eval`, `gait`, `compare` and `plots` unless one is asked for (`legkit eval --seed`): the
episodes' start poses, commands and obstacle layouts, so that two evaluations of one policy see the same episodes.
(Training's periodic evaluation and `legkit validate` have seeds of their own: legkit.evaluate.best.SEED, 777.)"""


class LegkitError(Exception):
    """A user-facing error: the CLI prints its one-line message and exits with code 2."""


def _register_gym_envs() -> None:
    """Register `legkit/Go2Walk-v0` with gymnasium (lazily: nothing heavy is imported here)."""
    try:
        import gymnasium
    except ImportError:  # pragma: no cover - gymnasium is a dependency
        return
    if "legkit/Go2Walk-v0" not in gymnasium.registry:
        gymnasium.register("legkit/Go2Walk-v0", entry_point="legkit.envs.gym_env:LegkitGymEnv",
                           kwargs={"task": "go2-walk"})


_register_gym_envs()
