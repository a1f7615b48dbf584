"""Version 3 -> 4: per-dataset split fractions moved to one ``[split]`` table keyed by group.

``[data_request.<group>.<name>] split_fraction = f`` -> ``[split] <group> = f``, and the older
``data_set.train_size / validate_size / test_size`` -> ``[split] train / validate / test``.
"""

MOVED = {
    "data_set.train_size": "split.train",
    "data_set.validate_size": "split.validate",
    "data_set.test_size": "split.test",
}


def migrate(config: dict) -> list[str]:
    messages: list[str] = []
    split = config.get("split", {})
    for group, datasets in (config.get("data_request") or {}).items():
        if not isinstance(datasets, dict):
            continue
        for name, entry in datasets.items():
            if isinstance(entry, dict) and "split_fraction" in entry:
                fraction = entry.pop("split_fraction")
                # The primary dataset decides a group's fraction; a secondary only fills a gap.
                if "primary_id_field" in entry or group not in split:
                    split[group] = fraction
                messages.append(
                    f"data_request.{group}.{name}.split_fraction -> split.{group}: "
                    f"write `{group} = {fraction}` under [split]."
                )
    data_set = config.get("data_set")
    if isinstance(data_set, dict):
        for group in ("train", "validate", "test"):
            if f"{group}_size" in data_set:
                fraction = data_set.pop(f"{group}_size")
                split.setdefault(group, fraction)
                messages.append(
                    f"data_set.{group}_size -> split.{group}: write `{group} = {fraction}` under [split]."
                )
    if messages:
        config["split"] = split
    return messages
