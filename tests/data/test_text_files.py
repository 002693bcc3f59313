"""Readers of users' text files: rows streamed lazily, and every bad file a one-line error naming the file and line."""

import json
from pathlib import Path

import pytest

from nlparena.data.text_files import AlignedFiles, CorpusFile, TableFile
from nlparena.data.text_splits import SplitPlan, held_out_draw, held_out_fraction
from nlparena.errors import ConfigError

WHAT = "data.train_file"


def table(path: Path, text: str, columns=("source", "target")) -> TableFile:
    path.write_text(text)
    return TableFile(path, tuple(columns), WHAT)


def refusal(make, *args) -> str:
    """The one-line message of the ConfigError that making and reading a source raises."""
    with pytest.raises(ConfigError) as err:
        list(make(*args).rows())
    message = str(err.value)
    assert "\n" not in message and message.startswith(WHAT), message
    return message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.tsv", "target\tsource\tid\nguten tag\tgood day\t1\nja\tyes\t2\n"),
        ("a.csv", 'id,source,target\n1,good day,guten tag\n2,"yes, ""really""",ja\n'),
        ("a.jsonl", '{"source": "good day", "target": "guten tag"}\n\n{"source": "yes", "target": "ja", "n": 2}\n'),
    ],
)
def test_tables_give_the_named_columns_of_each_row_with_its_line(tmp_path, name, text):
    rows = list(table(tmp_path / name, text).rows())
    assert rows[0][1] == ("good day", "guten tag") and rows[1][1][1] == "ja"
    lines = (1, 3) if name.endswith("jsonl") else (2, 3)  # a JSON Lines file has no header and may have blank lines
    assert (rows[0][0], rows[1][0]) == lines


def test_a_csv_field_may_hold_commas_quotes_and_newlines(tmp_path):
    rows = list(table(tmp_path / "a.csv", 'source,target\n"a, ""b""\nc",d\ne,f\n').rows())
    assert rows == [(2, ('a, "b"\nc', "d")), (4, ("e", "f"))]


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("source,target\na,b\n".encode("utf-8-sig"))
    assert list(TableFile(path, ("source", "target"), WHAT).rows()) == [(2, ("a", "b"))]


def test_rows_are_read_lazily(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("source\ttarget\n" + "a\tb\n" * 3 + "only one field\n")
    rows = TableFile(path, ("source", "target"), WHAT).rows()
    assert next(rows) == (2, ("a", "b"))  # the bad line 5 is not read yet
    with pytest.raises(ConfigError, match=":5: 1 fields"):
        list(rows)


def test_aligned_files_pair_line_i_with_line_i(tmp_path):
    (tmp_path / "a.txt").write_text("good day\nyes\n")
    (tmp_path / "b.txt").write_text("guten tag\nja\n")
    rows = list(AlignedFiles((tmp_path / "a.txt", tmp_path / "b.txt"), WHAT).rows())
    assert rows == [(1, ("good day", "guten tag")), (2, ("yes", "ja"))]


def test_a_corpus_row_is_a_document_of_sentences(tmp_path):
    (tmp_path / "c.txt").write_text("\nfirst one.\nfirst two.\n\n\n  \nsecond one.\n")
    assert list(CorpusFile(tmp_path / "c.txt", WHAT).rows()) == [
        (2, ("first one.", "first two.")),
        (7, ("second one.",)),
    ]


BAD_TABLES = {  # file name, content -> what the message says after the file name
    "missing": ("a.tsv", None, "a.tsv: no such file"),
    "empty": ("a.tsv", "", "a.tsv is empty"),
    "header-only": ("a.csv", "source,target\n", "a.csv has a header but no rows"),
    "unknown-suffix": ("a.txt", "x\n", "a.txt: unknown file type '.txt'; give a .tsv, .csv, .jsonl file"),
    "no-such-column": ("a.tsv", "src\ttarget\nx\ty\n", "a.tsv has no column 'source' (its columns: src, target)"),
    "stray-tab": ("a.tsv", "source\ttarget\na\tb\nc\td\te\n", "a.tsv:3: 3 fields, but the header has 2"),
    "missing-field": ("a.csv", "source,target\na,b\nc\n", "a.csv:3: 1 fields, but the header has 2"),
    "not-utf8": ("a.tsv", b"source\ttarget\na\tb\nc\t\xff\n", "a.tsv:3: not UTF-8 text (byte 0xff at column 3)"),
    "json-not-object": ("a.jsonl", '{"source": "a", "target": "b"}\n["c", "d"]\n', "a.jsonl:2: not a JSON object"),
    "json-invalid": ("a.jsonl", '{"source": "a", "target": "b"}\n{"source": \n', "a.jsonl:2: not valid JSON"),
    "json-lacks-key": ("a.jsonl", '{"source": "a", "target": "b"}\n{"source": "c"}\n', "a.jsonl:2: no key 'target'"),
    "json-value-not-text": ("a.jsonl", '{"source": "a", "target": ["b"]}\n', "a.jsonl:1: 'target' is list, not text"),
}


@pytest.mark.parametrize(("name", "content", "expected"), BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_a_bad_table_is_one_line_naming_the_file_and_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    message = refusal(TableFile, path, ("source", "target"), WHAT)
    assert f"{tmp_path}/{expected}" in message, message


def test_aligned_files_of_different_lengths_are_refused_with_both_counts(tmp_path):
    (tmp_path / "a.txt").write_text("1\n2\n3\n")
    (tmp_path / "b.txt").write_text("1\n2\n3\n4\n5\n")
    message = refusal(AlignedFiles, (tmp_path / "a.txt", tmp_path / "b.txt"), WHAT)
    assert f"{tmp_path}/a.txt has 3 lines but {tmp_path}/b.txt has 5 lines; the files must be line-aligned" in message


def test_a_corpus_of_blank_lines_is_refused(tmp_path):
    (tmp_path / "c.txt").write_text("\n \n\n")
    assert f"{tmp_path}/c.txt has only blank lines" in refusal(CorpusFile, tmp_path / "c.txt", WHAT)


def test_a_rows_split_depends_on_seed_and_row_number_only(tmp_path):
    rows = [{"source": f"s{i}", "target": f"t{i}"} for i in range(400)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    source = TableFile(tmp_path / "a.jsonl", ("source", "target"), WHAT)
    plans = [SplitPlan(source, None, None, 0.2, 0.1, seed) for seed in (3, 3, 4)]
    splits = [[split for split, _, _ in plan.rows()] for plan in plans]
    assert splits[0] == splits[1] != splits[2]
    assert 40 < splits[0].count("val") < 120 and 10 < splits[0].count("test") < 70
    assert [plans[0].split_of(i) for i in (399, 0, 7)] == [splits[0][i] for i in (399, 0, 7)]  # in any order
    assert held_out_draw(3, 5) == held_out_draw(3, 5) != held_out_draw(3, 6)


def test_a_split_with_a_file_of_its_own_takes_no_share_and_fractions_are_checked():
    assert held_out_fraction("val", None, has_file=False) == 0.05
    assert held_out_fraction("val", None, has_file=True) == 0.0
    with pytest.raises(ConfigError, match=r"^data.val_fraction=0.1: give data.val_file or a fraction, not both"):
        held_out_fraction("val", 0.1, has_file=True)
    with pytest.raises(ConfigError, match=r"^data.test_fraction=1.5: must be in \(0, 1\)"):
        held_out_fraction("test", 1.5, has_file=False)
