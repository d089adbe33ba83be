"""The imitation stage of a training pipeline: demonstrations (demos.npz), behaviour cloning of an MLP or LSTM
actor, warm starts of SB3 PPO / sb3-contrib RecurrentPPO from it, and a decaying BC term for fine-tuning.

It sits above train/ and evaluate/: the collect stage writes demos.npz,
this stage turns it into best.pt, and the fine-tune stage loads that into a PPO model: legkit.imitate.start,
which `legkit train TASK --set finetune.bc_policy=best.pt` runs (the finetune.* config keys).
"""

from legkit.imitate.bc import BCArch, BCPolicy, BCResult, load_bc, save_bc, split_episodes, train_bc
from legkit.imitate.demos import Demos, check_demos, load_demos, save_demos, summary
from legkit.imitate.finetune import BCCallback, BCRegularizer, PPOWithBC
from legkit.imitate.normalizer import ObsNormalizer, set_obs_statistics
from legkit.imitate.warmstart import DEFAULT_LOG_STD, bc_action, load_into_ppo, load_into_recurrent_ppo

__all__ = [
    "BCArch", "BCCallback", "BCPolicy", "BCRegularizer", "BCResult", "DEFAULT_LOG_STD", "Demos", "ObsNormalizer",
    "PPOWithBC", "bc_action", "check_demos", "load_bc", "load_demos", "load_into_ppo", "load_into_recurrent_ppo",
    "save_bc", "save_demos", "set_obs_statistics", "split_episodes", "summary", "train_bc",
]
