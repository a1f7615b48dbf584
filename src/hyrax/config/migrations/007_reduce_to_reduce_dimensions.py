"""Version 6 -> 7: ``[reduce]`` was renamed ``[reduce_dimensions]``, the name of its verb.

Keys inside keep their names here; the published Hyrax's own names for some of them
(``algorithm``, ``umap.model_path``...) are read by :mod:`hyrax.config.published`.
"""

MOVED = {"reduce": "reduce_dimensions"}


def migrate(config: dict) -> list[str]:
    if not isinstance(config.get("reduce"), dict):
        return []
    target = config.setdefault("reduce_dimensions", {})
    messages = []
    for key, value in config.pop("reduce").items():
        target.setdefault(key, value)
        messages.append(f"reduce.{key} -> reduce_dimensions.{key}")
    return messages
