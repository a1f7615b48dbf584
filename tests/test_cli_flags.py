"""One meaning per flag across verbs (issue 26, finding 9): -i/--input-dir is the run a verb reads,
--results-dir the folder runs are made in (demo), --id an object id. The old spellings still work, with a
FutureWarning naming the new one, and --help shows only the new ones."""

from __future__ import annotations

import re
import warnings

import pytest

from hyrax.cli import main, verb_parser
from tests.training.test_worker_errors import cli_logging  # noqa: F401 - a fixture

#: (verb, old arguments, the destination and value they set, the spelling the warning names)
OLD_SPELLINGS = [
    ("lookup", ["-i", "obj1"], "id", "obj1", "use --id"),
    ("lookup", ["--id", "x", "-r", "RUN"], "input_dir", "RUN", "use --input-dir"),
    ("outliers", ["-r", "RUN"], "input_dir", "RUN", "use -i/--input-dir"),
    ("outliers", ["--results-dir", "RUN"], "input_dir", "RUN", "use -i/--input-dir"),
    ("reduce_dimensions", ["-r", "RUN"], "input_dir", "RUN", "use -i/--input-dir"),
    ("save_to_database", ["--results-dir", "RUN"], "input_dir", "RUN", "use -i/--input-dir"),
    ("rank", ["-r", "RUN"], "input_dir", "RUN", "use -i/--input-dir"),
    ("database_connection", ["--id", "x", "-r", "DIR"], "database_dir", "DIR", "use -d/--database-dir"),
    ("engine", ["-m", "RUN"], "model_directory", "RUN", "use -i/--input-dir"),
]


@pytest.mark.parametrize(("verb", "argv", "dest", "value", "replacement"), OLD_SPELLINGS)
def test_an_old_spelling_sets_the_same_option_and_names_the_new_one(verb, argv, dest, value, replacement):
    with pytest.warns(FutureWarning, match=f"hyrax {verb} {argv[-2]} is deprecated: {replacement}"):
        args = verb_parser(verb).parse_args(argv)
    assert getattr(args, dest) == value


NEW_SPELLINGS = [
    ("lookup", ["--id", "obj1", "--input-dir", "RUN"], {"id": "obj1", "input_dir": "RUN"}),
    ("outliers", ["-i", "RUN"], {"input_dir": "RUN"}),
    ("database_connection", ["--id", "x", "-i", "RUN"], {"input_dir": "RUN"}),
    ("engine", ["-i", "RUN"], {"model_directory": "RUN"}),
    ("engine", ["--model-directory", "RUN"], {"model_directory": "RUN"}),  # the published name
    ("to_onnx", ["-i", "RUN"], {"input_model_directory": "RUN"}),
    ("to_onnx", ["--input-model-directory", "RUN"], {"input_model_directory": "RUN"}),  # published
    ("train", ["--resume", "RUN"], {"resume": "RUN"}),
    ("demo", ["--results-dir", "DIR"], {"results_dir": "DIR"}),  # the folder runs are made in
]


@pytest.mark.parametrize(("verb", "argv", "expected"), NEW_SPELLINGS)
def test_the_new_spellings_do_not_warn(verb, argv, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = verb_parser(verb).parse_args(argv)
    assert {key: getattr(args, key) for key in expected} == expected


def test_help_shows_only_the_spellings_to_use(capsys):
    with pytest.raises(SystemExit):
        verb_parser("lookup").parse_args(["--help"])
    shown = capsys.readouterr().out
    assert "--id ID" in shown and "--input-dir RUN_DIR" in shown
    assert not re.search(r"(?<![-\w])-[ir]\b", shown) and "--results-dir" not in shown


def test_lookup_with_the_published_spellings_still_prints_the_vector(tmp_path, capsys, cli_logging):  # noqa: F811
    from tests.training.test_training import make_hyrax

    h = make_hyrax(tmp_path, model="HyraxLoopback", epochs=1)
    h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
    h.train()
    run = h.infer().data_location
    capsys.readouterr()
    with pytest.warns(FutureWarning) as warned:
        assert main(["lookup", "-i", "3", "-r", str(run)]) == 0
    assert {str(w.message) for w in warned if w.category is FutureWarning} >= {
        "hyrax lookup -i is deprecated: use --id (it works for now).",
        "hyrax lookup -r is deprecated: use --input-dir (it works for now).",
    }
    old = capsys.readouterr().out
    assert main(["lookup", "--id", "3", "--input-dir", str(run)]) == 0
    assert old.startswith("[[[") and capsys.readouterr().out == old  # object 3's (3, 8, 8) output
