"""The one-command PiDog pipeline: `legkit pipeline pidog --name NAME`.

Four stages, each in a child process, into one experiment folder RUNS/pipeline/NAME/:

    collect/      demos.npz (scripted-gait demonstrations, per behaviour), summary.json, metrics.json
    imitate/      best.pt, final.pt, checkpoint.pt, losses.csv, losses.png, closed_loop.json, metrics.json
    finetune/     run/ (a legkit run folder: `legkit eval`, `report`, `train --resume` work on it), metrics.json
    final_model/  policy.onnx, policy.pt, policy.json, runtime.py, model.zip, vecnormalize.pkl, metadata.json,
                  README.md, SUMMARY.md, metrics.json
    logs/         collect.log, imitate.log, finetune.log, package.log: each stage's own output, every attempt
    pipeline.json each stage's status, times, settings and metrics (legkit.pipeline.state)

A stage works in STAGE.partial/ and replaces STAGE/ only once it is whole; a stage that dies resumes from what
it kept there. It sits above train/, evaluate/ and export/ and calls them.
"""
