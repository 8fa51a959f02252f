"""`lighteval` for offline machines: `python -m hf_divsft.evaluation.lighteval_offline <lighteval args>`.

lighteval 0.13 cannot run without network as shipped, so before handing over to its own command line
this module adjusts three things at run time (nothing installed is modified):
1. its task registry imports every built-in task, and one (tiny_benchmarks) downloads a file from GitHub
   at import: with `--custom-tasks`, only that file's TASKS_TABLE is registered;
2. its details logger hashes `str`, which xxhash 4 refuses: strings are encoded first;
3. its per-sample cache lands inside the model folder (an absolute model path discards the cache root),
   keyed by path rather than weights: each run gets a temporary cache instead.
Run it in its own process: importing lighteval's transformers backend turns off autograd globally.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import types


def _register_custom_tasks_only() -> None:
    from lighteval.tasks.registry import Registry

    load_all = Registry.load_all_task_configs

    def custom_only(custom_tasks=None, load_multilingual=False):
        if custom_tasks is None:
            return load_all(custom_tasks=None, load_multilingual=load_multilingual)
        return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks))

    Registry.load_all_task_configs = staticmethod(custom_only)


def _hash_strings_as_bytes() -> None:
    import xxhash
    from lighteval.logging import info_loggers

    def xxh64(data=b"", *args, **kwargs):
        return xxhash.xxh64(data.encode("utf-8") if isinstance(data, str) else data, *args, **kwargs)

    info_loggers.xxhash = types.SimpleNamespace(xxh64=xxh64)


def _temporary_sample_cache() -> None:
    from lighteval.models.transformers import transformers_model
    from lighteval.utils.cache_management import SampleCache

    def per_run_cache(config):
        folder = tempfile.mkdtemp(prefix="lighteval-cache-")
        atexit.register(shutil.rmtree, folder, True)
        name = str(config.model_name).strip("/").replace("/", "__")
        return SampleCache(config.model_copy(update={"model_name": name, "cache_dir": folder}))

    transformers_model.SampleCache = per_run_cache


def main() -> None:
    _register_custom_tasks_only()
    _hash_strings_as_bytes()
    _temporary_sample_cache()
    from lighteval.__main__ import app

    app()


if __name__ == "__main__":
    main()
