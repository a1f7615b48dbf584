"""Version 1 -> 2: ``[model_inputs]`` was renamed ``[data_request]``."""

MOVED = {"model_inputs": "data_request"}


def migrate(config: dict) -> list[str]:
    if "model_inputs" not in config:
        return []
    old = config.pop("model_inputs")
    if "data_request" in config:
        # The new table wins; the old one is kept only for groups the new one lacks.
        for group, value in old.items():
            config["data_request"].setdefault(group, value)
        return [
            "[model_inputs] -> [data_request]: merged into your existing [data_request]; "
            "rename [model_inputs] to [data_request] in your file."
        ]
    config["data_request"] = old
    return ["[model_inputs] -> [data_request]: rename the table in your file."]
