"""The repository's figures, made from the shipped models by the library's own functions.

    python -m recipes.figures [--out docs/figures] [--only NAME ...] [--quick]

(`make figures`). Every figure is drawn from a measurement made here with the functions the
command line and the tests call, or from a JSON file shipped beside a model
(`assets/models/<env>/`); each one's caption, with the settings it was made with, goes into
`figures.json` beside the images. One module per kind of figure:

    planning.py      planned episodes of the shipped planners: one rollout GIF per task and a
                     hero GIF of all four; planning success against the CEM budget
    failed_push.py   a Push-T episode that misses its goal: real frames beside the decoder's
                     pictures of the latents the model predicted
    diagram.py       the architecture and the CEM planning loop, sizes read from config.json
    results.py       the paper's planning success beside ours (eval.json), 95% intervals
    collapse.py      training curves with SIGReg off and on (the workshop's collapse demo)
    analysis.py      the teleport surprise curve and the t-SNE map of trained vs untrained
                     latents
    common.py        the budgets, the run (models, output folder, figures.json), image files
"""
