"""Import transformers and diffusers once, under a lock, before any thread uses them.

Both libraries resolve names lazily (transformers' _LazyModule). When two
threads import them for the first time at once, e.g. the worker loading a
checkpoint (diffusers -> diffusers.loaders.peft -> transformers.PreTrainedModel)
while the page's token counter loads the CLIP tokenizer, one thread can see a
half-initialised module and fail with "cannot import name 'PreTrainedModel'
from 'transformers'". Every first use goes through `ensure()`, so the first
import happens in one thread while the others wait; later calls cost a flag check.

Once they are imported, the ~435,000 objects the imports made (modules, classes,
functions: alive for the whole process) are moved out of the cyclic garbage
collector's reach with gc.freeze(). Every full collection used to walk them: the
gc.collect() that frees a checkpoint's buffers after a load took 0.22-0.24 s of
a 0.47-0.62 s demo-model load on a 2-core Xeon, and 0.002-0.004 s after the
freeze (load 0.28-0.35 s), which the first image after launch waits for.
"""
from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_done = False


def ensure() -> None:
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        import diffusers.loaders.peft  # noqa: F401  (pulls transformers.PreTrainedModel)
        from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
        from transformers import (CLIPTextModel, CLIPTextModelWithProjection,  # noqa: F401
                                  CLIPTokenizer, PreTrainedModel)
        gc.freeze()
        _done = True
