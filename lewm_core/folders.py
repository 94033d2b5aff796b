"""The file names of a run folder and a model folder, declared once.

A run folder (`lewm train --out`) and a shipped model folder (`lewm ship --out`,
`assets/models/<env>/`) share the model's own files; the rest belong to one or the other.
Everything that reads or writes these files takes the name from here (the app can look for
them without importing torch).
"""

# The model: enough to load it and plan (`world_model.checkpoint.load_model`).
CONFIG_FILE = "config.json"  # model config, action statistics, data and training info
MODEL_FILE = "model.safetensors"

# A run folder's training state (`training`): resume and the lab's live curves.
STATE_FILE = "trainer_state.safetensors"  # weights, optimiser, RNG and data order
METRICS_FILE = "metrics.jsonl"  # one JSON line per logged step / validation
SUMMARY_FILE = "train_summary.json"  # written when a run ends
JOB_FILE = "job.json"  # a background job started by the lab
LOG_FILE = "train.log"  # its stdout and stderr

# What a model folder carries beside the model (`shipping`).
CARD_FILE = "MODEL_CARD.md"
EVAL_FILE = "eval.json"  # `lewm eval --json`
PROBE_FILE = "probe.json"  # `lewm probe --json`
SURPRISE_FILE = "surprise.json"  # `lewm surprise --json`
SAMPLE_FILE = "sample.h5"  # held-out frames of the task (`data.samples`)
SAMPLE_INFO = "sample.json"
SAMPLE_FILES = (SAMPLE_FILE, SAMPLE_INFO)
DECODER_CONFIG = "decoder.json"  # the visualisation decoder (package `decoder`)
DECODER_WEIGHTS = "decoder.safetensors"
DECODER_FILES = (DECODER_CONFIG, DECODER_WEIGHTS)
