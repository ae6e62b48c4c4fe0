"""Pictures of decompositions and generations, in two layers.

    grids.py    NumPy only: the slot palette, colour-coded segmentations, tiled grids and
                PNG writing (TensorBoard's preview images, training/summaries.py)
    figures.py  matplotlib: labelled figures for people to read (python -m
                genesis_tf.visualise, the demo); builds on grids, never the reverse

This file imports neither, so `from genesis_tf.plotting import grids` pulls in no matplotlib.
"""
