"""No message the pack shows has a doubled full stop ("…already exists.."), whether written in the source or
made by putting a service's own sentence where a message adds a stop (issue 17, item 20)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from likeness.errors import InputError, LikenessError, ServiceError, tidy

REPO = Path(__file__).resolve().parents[2]
DOUBLED = re.compile(r"[\w)\]\"'’]\.\.(?=\s|$)")          # in a Python string's text
DOUBLED_JS = re.compile(r"[\w)\]]\.\.(?=[\s\"'`])")           # in a line of JavaScript


def _python_strings(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):   # the literal parts of an f-string, joined as they will read
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            yield node.lineno, text
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_string_in_the_pack_source_has_a_doubled_full_stop():
    found = []
    for path in sorted([*REPO.glob("likeness/**/*.py"), *REPO.glob("nodes/**/*.py"), REPO / "__init__.py"]):
        found += [f"{path.relative_to(REPO)}:{n}: {s!r}" for n, s in _python_strings(path) if DOUBLED.search(s)]
    for path in sorted(REPO.glob("web/**/*.js")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DOUBLED_JS.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []


def test_the_scan_would_see_one():
    assert DOUBLED.search("queue again..") and DOUBLED.search("{} exists.. Then")
    assert not DOUBLED.search("folder may not contain '..'") and not DOUBLED.search("reading the file…")
    assert not DOUBLED.search("wait...") and not DOUBLED.search("../../etc/passwd")
    assert DOUBLED_JS.search('notes.push("queue again..");') and not DOUBLED_JS.search("import '../../app.js';")
    assert not DOUBLED_JS.search("`${a}...`") and not DOUBLED_JS.search('text: "may not contain \'..\'"')


@pytest.mark.parametrize("text, want", [
    ("It already exists..", "It already exists."),
    ("Not found.. Put it there.", "Not found. Put it there."),
    ("(a model with that name and owner already exists.).", "(a model with that name and owner already exists.)."),
    ("name may not contain '..'", "name may not contain '..'"),
    ("reading… and waiting...", "reading… and waiting..."),
])
def test_tidy_makes_a_doubled_stop_single_and_leaves_paths_and_ellipses(text, want):
    assert tidy(text) == want


def test_every_pack_error_is_tidied_whatever_built_it():
    for cls in (LikenessError, InputError, ServiceError):
        assert str(cls("The training failed on Replicate: NSFW content detected.. Try another prompt")) == \
            "The training failed on Replicate: NSFW content detected. Try another prompt"


def test_replicates_own_sentence_in_an_error_gets_one_full_stop(replicate_fake, replicate_api):
    replicate_fake.inject("GET", r"/v1/models/", 409, {"detail": "A model with that name and owner already exists.",
                                                       "status": 409}, times=10)
    with pytest.raises(InputError) as err:
        replicate_api.call("Creating the model", replicate_api.sdk.models.get, "me/face", idempotent=True)
    assert str(err.value) == "Creating the model: A model with that name and owner already exists."
