"""Version 2 -> 3: ``data_loader.shuffle`` moved to ``train.shuffle`` (only training data is shuffled)."""

MOVED = {"data_loader.shuffle": "train.shuffle"}


def migrate(config: dict) -> list[str]:
    loader = config.get("data_loader")
    if not isinstance(loader, dict) or "shuffle" not in loader:
        return []
    config.setdefault("train", {}).setdefault("shuffle", loader.pop("shuffle"))
    return ["data_loader.shuffle -> train.shuffle: move the key to [train]."]
