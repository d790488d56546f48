"""A1111's script interface (`modules.scripts`): the Script base class, loading, and the runner.

Extensions subclass `Script` in their scripts/*.py. Each generation tab has a
`ScriptRunner` (`scripts_txt2img`, `scripts_img2img`, as in A1111) holding one
instance of every script shown on that tab:
- selectable scripts (show() -> True) appear in the tab's "Script" dropdown;
  the chosen one's run(p, *args) replaces the plain generation;
- always-visible scripts (show() -> AlwaysVisible) get their own section and
  their hooks run in every generation of that tab.

Script arguments are one flat list, as in A1111: index 0 is the dropdown's
choice (0 = None), then each script's ui() values in the slots
[script.args_from, script.args_to). The page and the API both build that list
and call `run_with_scripts(p, runner, args)`; process_images() calls the hooks
(`p.scripts.process(p)` ...) on any StableDiffusionProcessing, so img2img gets
them too. Every call into a script is guarded: an exception is reported with
the extension's name (modules.extensions.report_error) and that script is
skipped for the step; generation goes on.
"""
from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class _AlwaysVisible:
    def __repr__(self):
        return "AlwaysVisible"


AlwaysVisible = _AlwaysVisible()   # show() returns this for scripts that are always on


@dataclass
class PostprocessImageArgs:
    image: object                  # a PIL image; postprocess_image may replace it


@dataclass
class PostprocessBatchListArgs:
    images: list                   # the batch's PIL images; postprocess_batch_list may replace items


class Script:
    """Base class of extension scripts (A1111 names and defaults)."""

    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    group = None
    infotext_fields = None
    paste_field_names = None
    api_info = None
    section = None
    controls = None

    def title(self) -> str:
        """The name shown in the Script dropdown and used by the API (lower-cased)."""
        raise NotImplementedError(f"{type(self).__name__} must define title()")

    def ui(self, is_img2img):
        """Create Gradio components; their values are passed to run() and the hooks as *args."""
        return []

    def show(self, is_img2img):
        """False: hidden on this tab; True: in the Script dropdown; AlwaysVisible: always on."""
        return True

    def run(self, p, *args):
        """Selectable scripts: do the generation (usually via processing.process_images) and return Processed."""
        return None

    def setup(self, p, *args):
        """Before anything else: the Processing object was just built."""

    def before_process(self, p, *args):
        """Before process_images starts (settings overrides not yet applied)."""

    def process(self, p, *args):
        """After seeds and prompts (p.all_prompts, p.all_seeds) are set, before the first batch."""

    def before_process_batch(self, p, *args, **kwargs):
        """Before a batch; kwargs: batch_number, prompts, seeds, subseeds (p.prompts etc. may be edited)."""

    def process_batch(self, p, *args, **kwargs):
        """Just before a batch is encoded and sampled; same kwargs as before_process_batch."""

    def postprocess_batch(self, p, *args, **kwargs):
        """After a batch is decoded; kwargs: images (tensor B,C,H,W in 0..1), batch_number."""

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs):
        """After a batch is turned into PIL images; may replace pp.images[i]; kwargs: batch_number."""

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args):
        """For each image before it is saved; may replace pp.image."""

    def postprocess(self, p, processed, *args):
        """After all images are made; may edit `processed`."""

    def describe(self):
        return ""

    def elem_id(self, item_id):
        """An elem_id unique to this script and tab: txt2img_<title>_<item_id>."""
        tab = "img2img" if self.is_img2img else "txt2img"
        title = "".join(c if c.isalnum() else "_" for c in self.title().lower())
        return f"{tab}_{title}_{item_id}"


# ---- loading -------------------------------------------------------------------

@dataclass
class ScriptClassData:
    script_class: type
    path: str
    basedir: str
    module: object
    extension: str


scripts_data: list[ScriptClassData] = []
current_basedir: str = str(Path(__file__).resolve().parent.parent)


def basedir() -> str:
    """The calling extension's folder (A1111): found from the call stack, else the one being loaded."""
    from modules import extensions

    for frame in inspect.stack()[1:]:
        filename = os.path.abspath(frame.filename)
        for ext in extensions.installed:
            root = os.path.abspath(ext.path)
            if filename.startswith(root + os.sep):
                return str(ext.path)
    return current_basedir


def load_module(path, module_name: str | None = None):
    """Import a .py file as a module (registered in sys.modules under module_name)."""
    path = str(path)
    module_name = module_name or os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


BUILTIN_SCRIPTS_DIR = Path(__file__).resolve().parent / "builtin_scripts"
BUILTIN = "builtin"  # the extension name errors of built-in scripts are reported under


def load_scripts(exts) -> None:
    """Import the built-in scripts, then every enabled extension's scripts/*.py (timed per extension).

    Built-in scripts (X/Y/Z plot, prompt matrix, ...) go through the same
    interface as extensions', as in A1111, but are not an extension: the
    extension switches never remove them.
    """
    scripts_data.clear()
    builtin = sorted(p for p in BUILTIN_SCRIPTS_DIR.glob("*.py") if not p.name.startswith("_"))
    _load_script_files(BUILTIN, BUILTIN_SCRIPTS_DIR, builtin)
    for ext in exts:
        started = time.perf_counter()
        _load_script_files(ext.name, Path(ext.path), ext.script_files)
        ext.load_seconds = time.perf_counter() - started


def _load_script_files(name: str, base: Path, paths) -> None:
    global current_basedir
    from modules import extensions

    for path in paths:
        saved_path, saved_basedir = list(sys.path), current_basedir
        # as in A1111: the extension folder is importable while its scripts load
        sys.path.insert(0, str(base))
        current_basedir = str(base)
        try:
            module = load_module(path, f"easel_ext_{extensions._safe(name)}_{extensions._safe(path.stem)}")
            for value in list(vars(module).values()):
                if (isinstance(value, type) and issubclass(value, Script) and value is not Script
                        and value.__module__ == module.__name__):
                    scripts_data.append(ScriptClassData(value, str(path), str(base), module, name))
        except Exception as exc:
            extensions.report_error(name, f"import of scripts/{path.name}", exc)
        finally:
            sys.path[:] = saved_path
            current_basedir = saved_basedir


# ---- the runner ----------------------------------------------------------------

class ScriptRunner:
    """The scripts of one tab (txt2img or img2img) and the calls into them."""

    def __init__(self, is_img2img: bool = False):
        self.is_img2img = is_img2img
        self.scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.titles: list[str] = []
        self.inputs: list = [None]          # the flat component list (index 0: the Script dropdown)
        self.layout_done = False

    @property
    def tab(self) -> str:
        return "img2img" if self.is_img2img else "txt2img"

    def initialize_scripts(self) -> None:
        """Instantiate every loaded Script class that shows on this tab."""
        self.scripts.clear()
        self.selectable_scripts.clear()
        self.alwayson_scripts.clear()
        self.titles.clear()
        self.inputs = [None]
        self.layout_done = False
        for data in scripts_data:
            try:
                script = data.script_class()
                script.filename = data.path
                script.extension = data.extension
                script.is_txt2img = not self.is_img2img
                script.is_img2img = self.is_img2img
                visibility = script.show(self.is_img2img)
                title = script.title() if visibility else None
            except Exception as exc:
                _report(data.extension, f"{data.script_class.__name__} (show/title on {self.tab})", exc)
                continue
            if not visibility:
                continue
            script.name = str(title).lower()
            if visibility is AlwaysVisible:
                script.alwayson = True
                self.alwayson_scripts.append(script)
            else:
                script.alwayson = False
                self.selectable_scripts.append(script)
                self.titles.append(str(title))
            self.scripts.append(script)

    # -- arguments ------------------------------------------------------------
    def find(self, name: str, alwayson: bool) -> Script | None:
        """A script by title, case-insensitive (the API sends lower case)."""
        pool = self.alwayson_scripts if alwayson else self.selectable_scripts
        for script in pool:
            if script.name == str(name).lower():
                return script
        return None

    def default_args(self) -> list:
        """The flat argument list with every component's default value (script index 0: None)."""
        if not self.scripts:
            return [0]
        self.ensure_layout()
        values = [0]
        for component in self.inputs[1:]:
            values.append(getattr(component, "value", None) if component is not None else None)
        return values

    def ensure_layout(self) -> None:
        """Call each script's ui() once to learn args_from/args_to (off-page when --nowebui)."""
        if self.layout_done:
            return
        from modules.ui import scripts_ui

        scripts_ui.layout_offpage(self)

    def args_of(self, script: Script, args) -> list:
        args = list(args or ())
        if script.args_from is None or script.args_to is None:
            return []
        return args[script.args_from:script.args_to]

    # -- calls ----------------------------------------------------------------
    def _call_alwayson(self, hook: str, p, *before, **kwargs) -> None:
        for script in self.alwayson_scripts:
            try:
                getattr(script, hook)(p, *before, *self.args_of(script, p.script_args), **kwargs)
            except Exception as exc:
                _report(script.extension, f"{script.title()}.{hook}()", exc, p)

    def setup_scripts(self, p) -> None:
        self._call_alwayson("setup", p)

    def before_process(self, p) -> None:
        self._call_alwayson("before_process", p)

    def process(self, p) -> None:
        self._call_alwayson("process", p)

    def before_process_batch(self, p, **kwargs) -> None:
        self._call_alwayson("before_process_batch", p, **kwargs)

    def process_batch(self, p, **kwargs) -> None:
        self._call_alwayson("process_batch", p, **kwargs)

    def postprocess_batch(self, p, decoded, **kwargs) -> None:
        """`decoded`: the VAE output in [-1, 1]; scripts get it in [0, 1] as in A1111 (a copy)."""
        if self.alwayson_scripts:
            self._call_alwayson("postprocess_batch", p, images=((decoded.float() + 1) / 2).clamp(0, 1), **kwargs)

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, **kwargs) -> None:
        self._call_alwayson("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_image(self, p, pp: PostprocessImageArgs) -> None:
        self._call_alwayson("postprocess_image", p, pp)

    def postprocess(self, p, processed) -> None:
        self._call_alwayson("postprocess", p, processed)

    def batch_hooks(self, p, batch_number: int) -> None:
        """before_process_batch then process_batch, on p.prompts/p.seeds/p.subseeds of the batch."""
        kwargs = {"batch_number": batch_number, "prompts": p.prompts, "seeds": p.seeds, "subseeds": p.subseeds}
        self.before_process_batch(p, **kwargs)
        self.process_batch(p, **kwargs)

    def postprocess_batch_images(self, p, images: list, batch_number: int) -> list:
        """postprocess_batch_list then postprocess_image on one batch's PIL images; returns the images to keep.

        The number of images must stay the same (the infotexts are per image);
        a script that changes it is reported and the batch is kept as it was.
        """
        pp = PostprocessBatchListArgs(list(images))
        self.postprocess_batch_list(p, pp, batch_number=batch_number)
        result = list(pp.images)
        if len(result) != len(images):
            _report("scripts", "postprocess_batch_list()", ValueError(
                f"a script changed the number of images of batch {batch_number} from {len(images)} to "
                f"{len(result)}; Easel keeps the batch unchanged"), p)
            result = list(images)
        for index, image in enumerate(result):
            one = PostprocessImageArgs(image)
            self.postprocess_image(p, one)
            result[index] = one.image
        return result

    def run(self, p, *args):
        """Run the selected script (args[0]: 1-based index into selectable_scripts; 0 = none); None if none."""
        index = args[0] if args else 0
        if not index:
            return None
        if not isinstance(index, int) or not 0 < index <= len(self.selectable_scripts):
            raise ValueError(f"script index {index!r} is out of range; {len(self.selectable_scripts)} scripts exist")
        script = self.selectable_scripts[index - 1]
        try:
            return script.run(p, *self.args_of(script, args))
        except ValueError:
            # the script refused its input (unknown sampler on an X/Y/Z axis, a bad line in prompts from file):
            # the job fails with its message, as in A1111, instead of making a plain image nobody asked for
            raise
        except Exception as exc:
            _report(script.extension, f"{script.title()}.run()", exc, p)
            return None


def _report(extension: str, what: str, exc: BaseException, p=None) -> None:
    from modules import extensions

    error = extensions.report_error(extension, what, exc)
    if p is not None:
        if not isinstance(getattr(p, "extension_errors", None), list):
            p.extension_errors = []
        p.extension_errors.append(f"extension {error.extension}: {error.what} failed ({error.message}); skipped")


scripts_txt2img = ScriptRunner(is_img2img=False)
scripts_img2img = ScriptRunner(is_img2img=True)


def initialize_runners() -> None:
    scripts_txt2img.initialize_scripts()
    scripts_img2img.initialize_scripts()


def runner_for(p) -> ScriptRunner:
    return scripts_img2img if getattr(p, "is_img2img", False) else scripts_txt2img


def run_with_scripts(p, args=None, runner: ScriptRunner | None = None):
    """Generate `p` with the tab's scripts: setup hooks, the selected script's run() or process_images.

    `args` is the flat script argument list (None: every script's defaults).
    Errors of scripts are added to the result's warnings.
    """
    from modules import processing

    runner = runner or runner_for(p)
    p.scripts = runner
    p.script_args = list(args) if args is not None else runner.default_args()
    runner.setup_scripts(p)
    processed = runner.run(p, *p.script_args)
    if processed is None:
        processed = processing.process_images(p)
    messages = getattr(p, "extension_errors", None) or []
    if messages and isinstance(getattr(processed, "warnings", None), list):
        processed.warnings.extend(m for m in messages if m not in processed.warnings)
    return processed


def api_script_args(runner: ScriptRunner, script_name=None, script_args=(), alwayson_scripts=None) -> list:
    """The flat argument list for an API request (A1111's script_name/script_args/alwayson_scripts).

    Names are matched case-insensitively against titles. ValueError names an
    unknown script (and the available ones), or too many arguments.
    """
    args = runner.default_args()
    if script_name:
        script = runner.find(script_name, alwayson=False)
        if script is None:
            available = ", ".join(s.name for s in runner.selectable_scripts) or "none"
            raise ValueError(f"script_name: no selectable script named {script_name!r}; available: {available}")
        _fill(args, script, list(script_args or ()), f"script_args of {script_name!r}")
        args[0] = runner.selectable_scripts.index(script) + 1
    alwayson_scripts = alwayson_scripts or {}
    unknown = [name for name in alwayson_scripts if runner.find(name, alwayson=True) is None]
    if unknown:
        available = ", ".join(s.name for s in runner.alwayson_scripts) or "none"
        raise ValueError(f"alwayson_scripts: no always-on script named {', '.join(map(repr, unknown))}; "
                         f"available: {available}")
    for name, entry in alwayson_scripts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("args", []), list):
            raise ValueError(f"alwayson_scripts.{name}: expected {{\"args\": [...]}}, got {entry!r}")
        _fill(args, runner.find(name, alwayson=True), entry.get("args", []), f"alwayson_scripts.{name}.args")
    return args


def _fill(args: list, script: Script, values: list, what: str) -> None:
    slots = (script.args_to or 0) - (script.args_from or 0)
    if len(values) > slots:
        raise ValueError(f"{what}: the script takes {slots} argument(s), got {len(values)}")
    for offset, value in enumerate(values):
        args[script.args_from + offset] = value
