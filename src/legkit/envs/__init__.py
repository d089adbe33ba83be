"""Environments built from a robot and a task: the batched SB3 VecEnv and a single-robot gymnasium env."""
