"""Version 4 -> 5: ``[umap]`` became ``[reduce_dimensions]`` (the published Hyrax called it ``[reduce]``
until version 7; see ``007_reduce_to_reduce_dimensions``).

``[umap] fit_sample_size`` -> ``reduce_dimensions.umap.fit_sample_size``; ``[umap] parallel`` ->
``reduce_dimensions.parallel``; ``[umap.UMAP]`` keyword arguments -> ``[reduce_dimensions.umap.kwargs]``
(``n_components`` -> ``reduce_dimensions.n_components``); ``save_fit_umap`` is gone (the fitted
reducer is always saved in the run directory).
"""

MOVED = {
    "umap": "reduce_dimensions",
    "umap.fit_sample_size": "reduce_dimensions.umap.fit_sample_size",
    "umap.parallel": "reduce_dimensions.parallel",
    "umap.UMAP": "reduce_dimensions.umap.kwargs",
}


def migrate(config: dict) -> list[str]:
    messages: list[str] = []
    umap = config.pop("umap", None)
    if not isinstance(umap, dict):
        return messages
    target = config.setdefault("reduce_dimensions", {})
    target.setdefault("name", "umap")
    algorithm = target.setdefault("umap", {})
    for key, value in umap.items():
        if key == "UMAP" and isinstance(value, dict):
            kwargs = algorithm.setdefault("kwargs", {})
            for kwarg, kwarg_value in value.items():
                if kwarg == "n_components":
                    target["n_components"] = kwarg_value
                    messages.append("umap.UMAP.n_components -> reduce_dimensions.n_components")
                else:
                    kwargs[kwarg] = kwarg_value
                    messages.append(f"umap.UMAP.{kwarg} -> reduce_dimensions.umap.kwargs.{kwarg}")
        elif key == "fit_sample_size":
            algorithm[key] = value
            messages.append("umap.fit_sample_size -> reduce_dimensions.umap.fit_sample_size")
        elif key == "parallel":
            target[key] = value
            messages.append("umap.parallel -> reduce_dimensions.parallel")
        elif key == "save_fit_umap":
            messages.append("umap.save_fit_umap removed: the fitted reducer is always saved; delete the key.")
        else:
            target[key] = value
            messages.append(f"umap.{key} -> reduce_dimensions.{key}")
    messages.append(
        '[umap] -> [reduce_dimensions] (name = "umap"): the `umap` verb is now `reduce_dimensions`.'
    )
    return messages
