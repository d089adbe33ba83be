"""Export a trained policy for a robot: one graph from raw observation to action, and what it reads.

    export/<name>/
        policy.onnx (or policy.pt)  raw actor observation in -> action and joint targets out (and a
                                    recurrent policy's LSTM state h, c in -> h_out, c_out out); the
                                    VecNormalize statistics, the clipping and the action scaling are inside
        policy.json                 joints, home pose, gains, torque and servo speed limits, control rate,
                                    the observation layout with units and sources, the sensors' layout,
                                    command ranges, parity, legkit version and revision
        runtime.py                  legkit.runtime: numpy + onnxruntime, copied to the robot as it is
"""
