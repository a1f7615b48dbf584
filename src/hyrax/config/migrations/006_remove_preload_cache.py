"""Version 5 -> 6: ``data_set.preload_cache`` and ``data_set.preload_threads`` were removed.

Hyrax streams data through worker processes instead of preloading it into memory.
"""

REMOVED = ("preload_cache", "preload_threads")
MOVED = {f"data_set.{key}": "(removed: data is streamed; use data_loader.num_workers)" for key in REMOVED}


def migrate(config: dict) -> list[str]:
    data_set = config.get("data_set")
    if not isinstance(data_set, dict):
        return []
    return [
        f"data_set.{key} removed: data is streamed by data_loader.num_workers workers; delete the key."
        for key in REMOVED
        if data_set.pop(key, None) is not None
    ]
