"""`legkit tune`: search PPO settings and reward weights with Optuna to minimize the steps a task takes to learn.

    space.py      the search space YAML (legkit/configs/<task>.tune.yaml), checked through the --set machinery
    objective.py  time to walk: the value of a trial, and the observer that reports it to the pruner
    trial.py      one trial: an ordinary run folder trained in this process
    storage.py    storage URLs: SQLite (default), any SQLAlchemy database, Optuna's journal file
    study.py      the study's record, creating or joining it, worker processes
    show.py       --show: trials table, importances, best.yaml, plots
    cli.py        the subcommand

A room above train/ and evaluate/; Optuna is imported only when `legkit tune` runs.
"""
