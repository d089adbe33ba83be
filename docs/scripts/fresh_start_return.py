"""The return of a freshly built PPO policy, measured as a fine-tuning start measures a clone's.

    .venv/bin/python docs/scripts/fresh_start_return.py [CONFIG.yaml] [EPISODES]

Builds the model of `legkit train pidog-run --config CONFIG` (default: the packaged recipe pidog-turn) with no
start (finetune.bc_policy=null), lets VecNormalize's statistics follow 200 steps of 16 robots under the fresh
policy's sampled actions (as a fresh run's first rollout would), then measures the deterministic and the sampled
return with legkit.imitate.start.measure_return (EPISODES robots, default 8, the seed of the run). Compare with
finetune.json's return_start of a run started from a clone: both under the same exploration noise
(ppo.log_std_init / finetune.log_std).
"""

import sys

from stable_baselines3.common.vec_env import VecNormalize

from legkit.envs.vec_env import LegkitVecEnv
from legkit.imitate.start import measure_return
from legkit.train import trainer
from legkit.train.config import build_config, recipe_file

config = sys.argv[1] if len(sys.argv) > 1 else str(recipe_file("pidog-turn"))
episodes = int(sys.argv[2]) if len(sys.argv) > 2 else 8
cfg = build_config("pidog-run", config, ["finetune.bc_policy=null"])
env = LegkitVecEnv(cfg.task, 16, seed=cfg.run.seed)
norm = VecNormalize(env, norm_obs=True, norm_reward=False, clip_obs=trainer.CLIP_OBS, gamma=cfg.ppo.gamma)
model = trainer._build_model(cfg, norm)
obs = norm.reset()
for _ in range(200):
    action, _ = model.predict(obs, deterministic=False)
    obs, *_ = norm.step(action)
norm.training = False
print(measure_return(model, norm, cfg, episodes, cfg.run.seed))
env.close()
