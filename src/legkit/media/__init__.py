"""Seeing a policy learn: offscreen videos, checkpoint progressions, training plots, HTML reports, the viewer.

render.py       headless OpenGL (EGL, then OSMesa), the follow camera, the offscreen renderer
video.py        `legkit video` and the clips rendered during training
progression.py  `legkit progression`: several checkpoints in one video
plots.py        PNG training curves (matplotlib)
report.py       `legkit report`: self-contained HTML + SUMMARY.md
viewer.py       `legkit play`: MuJoCo's interactive viewer
"""
