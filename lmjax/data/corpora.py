"""Local text corpora as a TensorFlow-free tfds dataset: array_record files read back
through `as_data_source` (`tfds.load` would import TensorFlow).

`data.corpus` is either a known name (`tiny_shakespeare`, looked up in the data dir and
downloaded through the tfds download manager when absent) or the path of any UTF-8
text file. Prepared files live under the cache dir, never beside the read-only corpora.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import tensorflow_datasets as tfds
from etils import epath

from lmjax.config import DataConfig, resolve_cache_dir, resolve_data_dir
from lmjax.data.locking import file_lock
from lmjax.data.text import decode_corpus, split_documents, train_validation_split
from lmjax.errors import DataError

SPLITS = ("train", "validation")
TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)


@dataclasses.dataclass
class TextCorpusConfig(tfds.core.BuilderConfig):
    """One corpus: `filename` (relative to the data dir, or absolute) and where to fetch it."""

    filename: str = ""
    url: str = ""


KNOWN_CORPORA = {
    "tiny_shakespeare": TextCorpusConfig(
        name="tiny_shakespeare",
        description="Karpathy's tiny-shakespeare; documents are speeches.",
        filename="tinyshakespeare/input.txt",
        url=TINY_SHAKESPEARE_URL,
    ),
}


class TextCorpus(tfds.core.GeneratorBasedBuilder):
    """Documents (blank-line separated) of one text file, split 90/10 into train/validation.

    The caller hands over the already decoded text (so the UTF-8 policy is applied once,
    with one warning); `text=None` means download the config's URL instead.
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = list(KNOWN_CORPORA.values())

    def __init__(self, *, text: str | None = None, invalid_utf8: str = "replace", **kwargs):
        self._text = text
        self._invalid_utf8 = invalid_utf8
        super().__init__(**kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def _checksums_path(cls) -> epath.Path:
        """Beside this module; tfds's own lookup needs the `importlib_resources` backport."""
        return epath.Path(__file__).parent / "checksums.tsv"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            disable_shuffling=True,  # keep document order: packing follows the file
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        text = self._text
        if text is None:
            text = decode_corpus(
                _download(dl_manager, self.builder_config), self.builder_config.url, self._invalid_utf8
            )
        documents = split_documents(text)
        if not documents:
            raise DataError(f"corpus {self.builder_config.name} holds no text; give a non-empty file")
        splits = zip(SPLITS, train_validation_split(documents))
        # tfds cannot write an empty split; a one-document corpus simply has no validation
        return {split: self._generate_examples(docs) for split, docs in splits if docs}

    def _generate_examples(self, documents: Sequence[str]) -> Iterator[tuple[int, dict]]:
        for index, document in enumerate(documents):
            yield index, {"text": document}


@dataclasses.dataclass(frozen=True)
class PreparedCorpus:
    """Random-access documents per split, and the name that keys caches built from them."""

    name: str
    splits: dict[str, Sequence[dict]]

    def documents(self, split: str) -> Sequence[dict]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if split not in self.splits or not len(self.splits[split]):
            raise DataError(
                f"corpus {self.name} has no {split} documents: give it at least two documents "
                "separated by a blank line"
            )
        return self.splits[split]


def prepare_corpus(data_config: DataConfig) -> PreparedCorpus:
    """Find, check and (once, under a lock) prepare the configured corpus.

    The file is read and its UTF-8 checked on every call, so data.invalid_utf8=error
    fails even when an earlier run prepared the same file with replacements.
    """
    builder_config, path = _locate(data_config)
    text = None
    if path is not None:
        data = path.read_bytes()
        if not data.strip():
            raise DataError(f"corpus {path} is empty; give a file that contains text")
        text = decode_corpus(data, path, data_config.invalid_utf8)
        if builder_config is None:
            builder_config = _file_config(path, data)
    data_dir = resolve_cache_dir(data_config) / "tfds"
    with file_lock(data_dir / builder_config.name):
        builder = TextCorpus(
            config=builder_config, data_dir=data_dir, text=text,
            invalid_utf8=data_config.invalid_utf8, file_format="array_record",
        )
        if not builder.is_prepared():
            builder.download_and_prepare(download_dir=resolve_cache_dir(data_config) / "downloads")
    return PreparedCorpus(builder_config.name, builder.as_data_source())


def _locate(data_config: DataConfig) -> tuple[TextCorpusConfig | None, Path | None]:
    """(known corpus config or None, local file or None meaning download)."""
    corpus = data_config.corpus
    data_dir = resolve_data_dir(data_config)
    if corpus in KNOWN_CORPORA:
        known = KNOWN_CORPORA[corpus]
        path = data_dir / known.filename
        if path.is_file():
            return known, path
        if data_config.download:
            return known, None
        raise DataError(
            f"corpus {corpus} not found at {path}: put {known.url} there, point LMJAX_DATA_DIR "
            "(or data.data_dir) at a folder holding it, or set data.download=true"
        )
    candidates = (Path(corpus).expanduser(), data_dir / corpus)
    for path in candidates:
        if path.is_file():
            return None, path
    for path in candidates:
        if path.is_dir():
            raise DataError(
                f"data.corpus={corpus} is the directory {path}, not a text file: give one file in it, "
                f"or read every file as data.sources=['{path}/*.txt'] (docs/data.md)"
            )
    raise DataError(
        f"corpus {corpus!r} is neither a known corpus ({', '.join(KNOWN_CORPORA)}) nor a file "
        f"(looked in the working directory and in the data dir {data_dir}); fix data.corpus"
    )


def _file_config(path: Path, data: bytes) -> TextCorpusConfig:
    """Keyed by content, so an edited file is prepared afresh and never read stale."""
    slug = re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_")[:40] or "corpus"
    digest = hashlib.sha256(data).hexdigest()[:16]
    return TextCorpusConfig(name=f"{slug}-{digest}", filename=str(path.resolve()))


def _download(dl_manager: tfds.download.DownloadManager, config: TextCorpusConfig) -> bytes:
    try:
        return Path(dl_manager.download(config.url)).read_bytes()
    except Exception as err:  # network errors come in many types; all mean the same here
        raise DataError(
            f"could not download corpus {config.name} from {config.url} ({type(err).__name__}); "
            f"put the file at <data dir>/{config.filename} (data dir: LMJAX_DATA_DIR or "
            "data.data_dir) and run again"
        ) from None
