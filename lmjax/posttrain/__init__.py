"""Post-training on the lmjax stack: SFT, a reward model, DPO (and IPO), LoRA and PPO.

One job per module: `task` (the verifiable "story about a word" task and its reward),
`datasets` (sampling and jsonl files), `packing` (prompt/response examples into packed
batches), `sequences` (log-probabilities and hidden states of responses), `engine` and
`tuning` (a method's loss and batches, and what trains, run on the training engine of
`lmjax.train`), then one module per method. `docs/posttraining.md` shows them working
on stories260K.
"""
