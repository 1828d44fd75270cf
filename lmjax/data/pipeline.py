"""Documents to per-host training batches: tokenize, pack, window, shuffle, batch (grain).

Everything up to the batch is a random-access `grain.MapDataset`, so example i of the
global order is a pure function of (token stream, seed, i): the iterator's state is a
single JSON-serialisable index, and a resumed run sees exactly the batches it would
have seen. Hosts take contiguous slices of each global batch, so the global batch does
not depend on how many processes read it.
"""

from __future__ import annotations

import math

import grain
import numpy as np
from absl import flags

from lmjax.config import DataConfig, resolve_cache_dir
from lmjax.data.corpora import prepare_corpus
from lmjax.data.fingerprint import tokenizer_fingerprint
from lmjax.data.locking import atomic_write_bytes, file_lock
from lmjax.data.mixture import Mixture, load_mixture
from lmjax.errors import ConfigError, DataError
from lmjax.objectives import Objective
from lmjax.tokenizers import Tokenizer

READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)


def make_batches(
    data: DataConfig,
    global_batch: int,
    tokenizer: Tokenizer,
    objective: Objective,
    split: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    seed: int | None = None,
    source: str | None = None,
    mixture: Mixture | None = None,
) -> grain.DatasetIterator:
    """This process's slice of each global batch of `global_batch` examples: a dict of numpy
    arrays, leading dim B/P.

    "train" repeats forever, reshuffled every epoch; any other split is one pass in corpus
    order, its last global batch filled with all-padding (zero-weight) examples so every
    token is evaluated and every batch has the same shape. `seed` defaults to
    data.shuffle_seed and also seeds each example's rng (objectives that mask use it).
    """
    seed = data.shuffle_seed if seed is None else seed
    _check_sharding(global_batch, process_index, process_count)
    if not 0 <= seed < 2**32:
        raise ConfigError(f"data.shuffle_seed={seed} must lie in [0, 2**32)")
    if data.sources:
        mixture = mixture or load_mixture(data, tokenizer)
        examples = _mixture_examples(data, mixture, global_batch, tokenizer, objective, split, seed, source)
    else:
        examples = _global_examples(data, global_batch, tokenizer, objective, split, seed)
    # Global batch b is the mini-batches b*P .. b*P+P-1 of size B/P; host p takes b*P+p.
    local = examples.batch(global_batch // process_count)[process_index::process_count]
    batches = local.to_iter_dataset(READ_OPTIONS)
    if data.worker_count > 0:
        if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags
            flags.FLAGS.mark_as_parsed()
        batches = batches.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.worker_count))
    return iter(batches)


def token_stream(data: DataConfig, tokenizer: Tokenizer, split: str) -> np.ndarray:
    """The split's documents tokenized and concatenated, each followed by the eos id.

    Tokenized once and kept as .npy in the cache dir (keyed by corpus, split and the
    tokenizer's saved files), so neither epochs nor restarts tokenize again.
    """
    corpus = prepare_corpus(data)
    path = resolve_cache_dir(data) / "tokens" / corpus.name / f"{split}-{tokenizer_fingerprint(tokenizer)}.npy"
    with file_lock(path):
        if not path.is_file():
            stream = _tokenize(corpus.documents(split), tokenizer)
            atomic_write_bytes(path, lambda handle: np.save(handle, stream))
    return np.load(path)


def unigram_entropy_nats(data: DataConfig, tokenizer: Tokenizer, split: str = "validation") -> float:
    """Entropy (nats/token) of the split's own token frequencies, eos included.

    The loss of the best model that ignores context, fitted to the very tokens the
    validation loss is measured on: a model that learnt anything beats it.
    """
    counts = np.bincount(token_stream(data, tokenizer, split))
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * np.log(probs)).sum())


class EncodeDocuments(grain.transforms.Map):
    """Stored documents to one array of their token ids, each followed by the eos id.

    Documents go through in groups: per-document calls cost grain overhead that is
    ten times the tokenizer's own work, and SentencePiece encodes a group on threads.
    """

    group_size = 256

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def map(self, records: list[dict]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch([record["text"].decode("utf-8") for record in records])
        eos = self.tokenizer.eos_id
        return np.asarray([token for ids in encoded for token in (*ids, eos)], dtype=np.int32)


class Window(grain.transforms.Map):
    """Window k of the packed stream: tokens [k*stride, k*stride + length), pad_id past the end.

    Padding only ever fills the final partial window (and, for evaluation, whole windows
    past the end that complete the last batch), so no token is dropped.
    """

    def __init__(self, stream: np.ndarray, length: int, stride: int, pad_id: int) -> None:
        self.stream, self.length, self.stride, self.pad_id = stream, length, stride, pad_id
        self.count = math.ceil(max(len(stream) - (length - stride), 0) / stride)

    @classmethod
    def for_objective(cls, stream: np.ndarray, objective: Objective, seq_len: int, pad_id: int) -> Window:
        length = objective.window_length(seq_len)
        return cls(stream, length, length - objective.window_overlap, pad_id)

    def map(self, index: int) -> np.ndarray:
        start = index * self.stride
        tokens = self.stream[start : start + self.length]
        return np.pad(tokens, (0, self.length - len(tokens)), constant_values=self.pad_id)


class MakeExample(grain.transforms.RandomMap):
    """The objective's example; grain seeds the rng from (seed, global example index)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def random_map(self, window: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.objective.make_example(window, rng)


def _global_examples(
    data: DataConfig, global_batch: int, tokenizer: Tokenizer, objective: Objective, split: str,
    seed: int,
) -> grain.MapDataset:
    """Examples in the order every host agrees on; example i is a pure function of (seed, i)."""
    stream = token_stream(data, tokenizer, split)
    window = Window.for_objective(stream, objective, data.seq_len, tokenizer.pad_id)
    if not window.count:
        raise DataError(
            f"the {split} split of corpus {data.corpus} has {len(stream)} tokens, too few for "
            "one example; give it more text"
        )
    return _stream_examples(window, global_batch, objective, split, seed)


def _mixture_examples(
    data: DataConfig, mixture: Mixture, global_batch: int, tokenizer: Tokenizer, objective: Objective,
    split: str, seed: int, source: str | None,
) -> grain.MapDataset:
    """The mixture's examples, or one source's alone (then as for a single corpus)."""
    def make_window(stream) -> Window:
        return Window.for_objective(stream, objective, data.seq_len, tokenizer.pad_id)

    if source is None:
        windows = mixture.examples(split, make_window, seed, global_batch)
        return windows.random_map(MakeExample(objective), seed=seed)
    window = make_window(mixture.cache(source).tokens(split))
    if not window.count:
        raise DataError(f"source {source} has no {split} example: give it more documents"
                        f"{' or raise data.validation_fraction' if split == 'validation' else ''}")
    return _stream_examples(window, global_batch, objective, split, seed)


def _stream_examples(window: Window, global_batch: int, objective: Objective, split: str,
                     seed: int) -> grain.MapDataset:
    """train: shuffled windows, reshuffled every epoch, forever; else one padded pass in order."""
    if split == "train":
        order = grain.MapDataset.range(window.count).shuffle(seed=seed).repeat()
    else:
        order = grain.MapDataset.range(math.ceil(window.count / global_batch) * global_batch)
    return order.map(window).random_map(MakeExample(objective), seed=seed)


def _tokenize(documents, tokenizer: Tokenizer) -> np.ndarray:
    groups = grain.MapDataset.source(documents).batch(EncodeDocuments.group_size, batch_fn=list)
    pieces = list(groups.map(EncodeDocuments(tokenizer)).to_iter_dataset(READ_OPTIONS))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int32)


def _check_sharding(global_batch: int, process_index: int, process_count: int) -> None:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ConfigError(f"process_index={process_index} must lie in [0, process_count={process_count})")
    if global_batch % process_count:
        raise ConfigError(
            f"train.global_batch_size={global_batch} is not divisible by the {process_count} processes; "
            "pick a multiple of the process count"
        )
