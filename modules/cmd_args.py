"""Command-line flags, named as AUTOMATIC1111 names them.

Users bring their `COMMANDLINE_ARGS` from A1111's webui-user.sh, so the flag
names, defaults and meanings follow A1111 (REFERENCE.md section 8).

Start-up order, as in A1111:
    parser = make_parser()
    early = parse_known_early(argv)          # --data-dir etc., to find extensions
    ... each extension's preload.py calls preload(parser) to add its flags ...
    cmd_opts = parse_args(argv, parser)      # strict: unknown flags exit 2

`COMMANDLINE_ARGS` from the environment is appended to argv (shlex rules)
by both parse functions, so `python app.py` behaves like `./webui.sh`.
webui.sh therefore passes only "$@" and leaves the variable to us; appending
it in the shell as well would count every flag twice.
"""

import argparse
import difflib
import os
import shlex
import sys

DEFAULT_PORT = 7860
DEFAULT_API_ONLY_PORT = 7861  # A1111 moves to 7861 with --nowebui

PRECISIONS = ("full", "autocast", "bf16")


def make_parser():
    """Build the parser with every flag Easel knows; extensions add theirs."""
    parser = argparse.ArgumentParser(
        prog="webui.sh",
        description="Easel, a Stable Diffusion web UI compatible with AUTOMATIC1111.",
    )
    add = parser.add_argument

    # Server
    add("--listen", action="store_true",
        help="serve on 0.0.0.0 (all interfaces) instead of 127.0.0.1")
    add("--server-name", metavar="NAME", type=str, default=None,
        help="host name or address to serve on (overrides --listen)")
    add("--port", metavar="PORT", type=_port, default=None,
        help=f"port to serve on (default {DEFAULT_PORT}, or {DEFAULT_API_ONLY_PORT} with --nowebui)")
    add("--share", action="store_true",
        help="ask Gradio for a public share link (contacts gradio.live)")
    add("--autolaunch", action="store_true",
        help="open the page in the system browser once the server is up")
    add("--theme", type=str, choices=("light", "dark"), default=None,
        help="force the light or dark page theme")
    add("--cors-allow-origins", metavar="ORIGINS", type=str, default=None,
        help="comma-separated origins allowed by CORS, e.g. http://localhost:3000")
    add("--cors-allow-origins-regex", metavar="REGEX", type=str, default=None,
        help="regular expression of origins allowed by CORS")

    # API and authentication
    add("--api", action="store_true",
        help="enable the A1111 HTTP API under /sdapi/v1")
    add("--nowebui", action="store_true",
        help="serve the API only, without the Gradio page")
    add("--api-auth", metavar="USER:PASS", type=str, default=None,
        help='HTTP basic credentials for the API, "user:password[,user2:password2]"')
    add("--gradio-auth", metavar="USER:PASS", type=str, default=None,
        help='credentials for the page, "user:password[,user2:password2]"')
    add("--gradio-auth-path", metavar="FILE", type=str, default=None,
        help="file with page credentials in --gradio-auth format, one or more lines")

    # Devices, precision and memory
    add("--xformers", action="store_true",
        help="use xformers attention (installed by webui.sh on CUDA machines)")
    add("--opt-sdp-attention", action="store_true",
        help="use PyTorch scaled-dot-product attention")
    add("--medvram", action="store_true",
        help="keep only the active model part on the GPU (less VRAM, slower)")
    add("--lowvram", action="store_true",
        help="offload model layers one by one (least VRAM, slowest)")
    add("--precision", type=str, choices=PRECISIONS, default="autocast",
        help="full = fp32 everywhere; autocast = fp16 on CUDA, fp32 on CPU; "
             "bf16 = bfloat16 (Easel, for CPUs with bf16 support)")
    add("--no-half", action="store_true",
        help="keep model weights in fp32")
    add("--no-half-vae", action="store_true",
        help="keep the VAE in fp32")
    add("--use-cpu", metavar="PART", type=str, nargs="*", default=[],
        help='run these parts on the CPU: "all", or names such as "sd"')
    add("--skip-torch-cuda-test", action="store_true",
        help="start even when no CUDA GPU is found (Easel runs on CPU anyway)")

    # Models and folders
    add("--data-dir", metavar="DIR", type=str, default=None,
        help="folder for config.json, cache.json, styles.csv, outputs/, models/ and extensions/ "
             "(default: the repository)")
    add("--models-dir", metavar="DIR", type=str, default=None,
        help="folder holding Stable-diffusion/, VAE/, Lora/ ... (default: DATA_DIR/models)")
    add("--ckpt", metavar="FILE", type=str, default=None,
        help="checkpoint to load at start (path, or name inside the checkpoint folder)")
    add("--ckpt-dir", metavar="DIR", type=str, default=None,
        help="extra folder to search for checkpoints")
    add("--vae-dir", metavar="DIR", type=str, default=None,
        help="folder with VAE files (default: models/VAE)")
    add("--lora-dir", metavar="DIR", type=str, default=None,
        help="folder with LoRA files (default: models/Lora)")
    add("--embeddings-dir", metavar="DIR", type=str, default=None,
        help="folder with textual-inversion embeddings (default: embeddings/)")
    add("--ui-settings-file", metavar="FILE", type=str, default=None,
        help="settings file (default: DATA_DIR/config.json)")
    add("--styles-file", metavar="FILE", type=str, default=None,
        help="styles file (default: DATA_DIR/styles.csv)")

    # Safety and extensions
    add("--enable-insecure-extension-access", action="store_true",
        help="allow installing, updating, removing and enabling extensions from the page even when the "
             "server is reachable from other machines (--listen, --share, a --server-name beyond loopback)")
    add("--disable-safe-unpickle", action="store_true",
        help="load .ckpt/.pt files without the restricted unpickler (runs their code!)")
    add("--disable-all-extensions", action="store_true",
        help="load no extensions at all")
    add("--disable-extra-extensions", action="store_true",
        help="load only built-in extensions")

    # Launcher
    add("--exit", action="store_true",
        help="install what is missing, then exit without starting (webui.sh)")
    add("--skip-prepare-environment", action="store_true",
        help="accepted for A1111 compatibility; Easel's launcher checks a stamp instead")
    add("--no-download-sd-model", action="store_true",
        help="accepted for A1111 compatibility; Easel never downloads models")
    return parser


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be a whole number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be between 1 and 65535, got {value}")
    return value


def full_argv(argv=None, environ=None):
    """argv (default sys.argv[1:]) with COMMANDLINE_ARGS appended, as A1111 does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    extra = environ.get("COMMANDLINE_ARGS", "")
    try:
        argv += shlex.split(extra)
    except ValueError as e:  # unbalanced quote in the environment variable
        sys.stderr.write(f"webui.sh: error: COMMANDLINE_ARGS cannot be split ({e}): {extra!r}\n")
        sys.exit(2)
    return argv


def parse_known_early(argv=None, parser=None, environ=None):
    """Parse what is known now, ignoring flags that extensions add later.

    Used before extensions are loaded: --data-dir and --disable-*-extensions
    decide where extensions are looked for.
    """
    parser = parser or make_parser()
    namespace, _unknown = parser.parse_known_args(full_argv(argv, environ))
    return _finish(namespace)


def parse_args(argv=None, parser=None, environ=None):
    """Parse all flags strictly; an unknown flag exits 2 with close matches."""
    parser = parser or make_parser()
    namespace, unknown = parser.parse_known_args(full_argv(argv, environ))
    if unknown:
        parser.exit(2, f"{parser.prog}: error: {unknown_flags_message(parser, unknown)}\n")
    return _finish(namespace)


def unknown_flags_message(parser, unknown):
    """One line naming each unknown argument, with 'did you mean' suggestions."""
    known = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    parts = []
    for arg in unknown:
        flag = arg.split("=", 1)[0]
        matches = difflib.get_close_matches(flag, known, n=3, cutoff=0.75) if flag.startswith("-") else []
        if matches:
            parts.append(f"{arg} (did you mean {' or '.join(matches)}?)")
        else:
            parts.append(arg)
    return "unrecognized arguments: " + ", ".join(parts) + "  (see --help for all flags)"


def _finish(namespace):
    """Fill defaults that depend on other flags."""
    if namespace.port is None:
        namespace.port = DEFAULT_API_ONLY_PORT if namespace.nowebui else DEFAULT_PORT
    return namespace


def server_name(cmd_opts):
    """The address to bind: --server-name, else 0.0.0.0 with --listen, else loopback."""
    if cmd_opts.server_name:
        return cmd_opts.server_name
    return "0.0.0.0" if cmd_opts.listen else "127.0.0.1"


def parse_credentials(text, source="--gradio-auth"):
    """'user:pass,user2:pass2' -> [("user", "pass"), ...]; ValueError naming the bad entry."""
    pairs = []
    for entry in text.replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user:
            raise ValueError(f"{source}: expected user:password, got {entry!r}")
        pairs.append((user, password))
    return pairs


def gradio_credentials(cmd_opts):
    """All page credentials from --gradio-auth and --gradio-auth-path (empty list: no login)."""
    pairs = parse_credentials(cmd_opts.gradio_auth) if cmd_opts.gradio_auth else []
    if cmd_opts.gradio_auth_path:
        with open(cmd_opts.gradio_auth_path, encoding="utf8") as f:
            pairs += parse_credentials(f.read(), source=f"--gradio-auth-path {cmd_opts.gradio_auth_path}")
    return pairs


def listens_beyond_loopback(cmd_opts):
    """True when others on the network can reach the server (A1111's extension guard)."""
    if cmd_opts.share or cmd_opts.listen:
        return True
    return server_name(cmd_opts) not in ("127.0.0.1", "localhost", "::1")
