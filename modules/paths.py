"""Where things live on disk, following A1111's layout (REFERENCE.md section 9).

Two roots:
- the repository (code and shipped files: configs/, the demo model), and
- the data dir (user files: config.json, cache.json, styles.csv, models/,
  embeddings/, extensions/, outputs/). It is the repository unless
  --data-dir moves it, exactly as in A1111.

Nothing here touches the disk at import time; build a `Paths` from the
parsed flags and call `ensure_dirs()` when the app starts.
"""

import os
from dataclasses import dataclass
from pathlib import Path


def repo_root() -> Path:
    """The repository folder (the one holding webui.sh and modules/)."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    repo: Path              # code and shipped files
    data_dir: Path          # user files (--data-dir, default: repo)
    models_dir: Path        # --models-dir, default DATA_DIR/models
    ckpt_dir_override: Path | None = None       # --ckpt-dir (searched first)
    vae_dir_override: Path | None = None        # --vae-dir
    lora_dir_override: Path | None = None       # --lora-dir
    embeddings_dir_override: Path | None = None  # --embeddings-dir
    settings_file_override: Path | None = None  # --ui-settings-file
    styles_file_override: Path | None = None    # --styles-file

    # ---- shipped with the code -------------------------------------------
    @property
    def configs_dir(self) -> Path:
        """Offline model configs and tokenizer files, per model family."""
        return self.repo / "configs"

    @property
    def clip_tokenizer_dir(self) -> Path:
        return self.configs_dir / "clip-tokenizer"

    # ---- user files in the data dir ---------------------------------------
    @property
    def config_file(self) -> Path:
        """Settings (A1111: config.json)."""
        return self.settings_file_override or self.data_dir / "config.json"

    @property
    def cache_file(self) -> Path:
        """Checkpoint hashes and other cached facts (A1111: cache.json)."""
        return self.data_dir / "cache.json"

    @property
    def styles_file(self) -> Path:
        return self.styles_file_override or self.data_dir / "styles.csv"

    @property
    def extensions_dir(self) -> Path:
        return self.data_dir / "extensions"

    @property
    def extensions_builtin_dir(self) -> Path:
        """Extensions that ship with the code (A1111: extensions-builtin)."""
        return self.repo / "extensions-builtin"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    # ---- model folders ----------------------------------------------------
    @property
    def sd_models_dir(self) -> Path:
        """Checkpoints: models/Stable-diffusion."""
        return self.models_dir / "Stable-diffusion"

    @property
    def ckpt_dirs(self) -> list[Path]:
        """Folders searched for checkpoints: --ckpt-dir, models/Stable-diffusion,
        then the repository's own models/Stable-diffusion, so the shipped demo
        model stays available when --data-dir or --models-dir point elsewhere."""
        dirs = [self.ckpt_dir_override] if self.ckpt_dir_override else []
        return _unique(dirs + [self.sd_models_dir, self.repo / "models" / "Stable-diffusion"])

    @property
    def vae_dir(self) -> Path:
        return self.vae_dir_override or self.models_dir / "VAE"

    @property
    def lora_dir(self) -> Path:
        return self.lora_dir_override or self.models_dir / "Lora"

    @property
    def embeddings_dirs(self) -> list[Path]:
        """--embeddings-dir, else both places A1111 versions used: embeddings/ and models/embeddings/."""
        if self.embeddings_dir_override:
            return [self.embeddings_dir_override]
        return _unique([self.data_dir / "embeddings", self.models_dir / "embeddings"])

    @property
    def esrgan_dir(self) -> Path:
        return self.models_dir / "ESRGAN"

    def model_dir(self, kind: str) -> Path:
        """models/<kind> for other model types (e.g. "ESRGAN", "VAE-approx")."""
        return self.models_dir / kind

    # ---- outputs ----------------------------------------------------------
    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from a setting: relative ones are relative to the data dir.

        Settings hold A1111-style relative defaults such as
        "outputs/txt2img-images"; this is where they land.
        """
        path = Path(os.path.expanduser(str(path)))
        return path if path.is_absolute() else self.data_dir / path

    def ensure_dirs(self) -> None:
        """Create the folders a user is expected to drop files into."""
        for folder in (self.sd_models_dir, self.vae_dir, self.lora_dir,
                       self.embeddings_dirs[0], self.extensions_dir, self.outputs_dir):
            folder.mkdir(parents=True, exist_ok=True)


def _unique(paths):
    seen, result = set(), []
    for p in paths:
        key = os.path.normcase(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            result.append(p)
    return result


def _absolute(value) -> Path | None:
    return Path(os.path.expanduser(value)).resolve() if value else None


def from_cmd_opts(cmd_opts, repo: Path | None = None) -> Paths:
    """Build Paths from parsed flags (modules.cmd_args.parse_args)."""
    repo = repo or repo_root()
    data_dir = _absolute(getattr(cmd_opts, "data_dir", None)) or repo
    models_dir = _absolute(getattr(cmd_opts, "models_dir", None)) or data_dir / "models"
    return Paths(
        repo=repo,
        data_dir=data_dir,
        models_dir=models_dir,
        ckpt_dir_override=_absolute(getattr(cmd_opts, "ckpt_dir", None)),
        vae_dir_override=_absolute(getattr(cmd_opts, "vae_dir", None)),
        lora_dir_override=_absolute(getattr(cmd_opts, "lora_dir", None)),
        embeddings_dir_override=_absolute(getattr(cmd_opts, "embeddings_dir", None)),
        settings_file_override=_absolute(getattr(cmd_opts, "ui_settings_file", None)),
        styles_file_override=_absolute(getattr(cmd_opts, "styles_file", None)),
    )
