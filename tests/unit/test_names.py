"""delivery/names.py: S3 keys made into safe, unique, reproducible archive member names."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import pytest

from delivery.names import MANIFEST_NAME, safe_member_names


def fid(n: int | str) -> str:
    """A file id as delivery sees them: a sha256 hex digest."""
    return hashlib.sha256(str(n).encode()).hexdigest()


def names_for(*keys: str) -> list[str]:
    """Member names for `keys`, given in window order with file ids fid(0), fid(1), ..."""
    names = safe_member_names([(fid(i), key) for i, key in enumerate(keys)])
    return [names[fid(i)] for i in range(len(keys))]


def tag(n: int | str, hex_digits: int = 8) -> str:
    return "~" + fid(n)[:hex_digits]


def fold(name: str) -> str:
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def utf8_len(text: str) -> int:
    return len(text.encode())


def assert_well_formed(names: Sequence[str]) -> None:
    """What every result must be: relative, no dot segments, short segments, no clash."""
    folded = [fold(name) for name in names]
    assert len(set(folded)) == len(names), "names must be unique case-insensitively"
    directories = {
        fold("/".join(name.split("/")[:depth]))
        for name in names
        for depth in range(1, name.count("/") + 1)
    }
    assert not set(folded) & directories, "no file may also be a directory"
    assert fold(MANIFEST_NAME) not in folded
    for name in names:
        assert "\0" not in name
        name.encode()  # valid UTF-8: no lone surrogates
        for segment in name.split("/"):
            assert segment not in ("", ".", "..")
            assert utf8_len(segment) <= 255


def extract(names: Sequence[str], into: Path) -> dict[str, bytes]:
    """Write a tar of `names` (body: the name's index) and extract it with filter='data'."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index, name in enumerate(names):
            body = str(index).encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r") as tar:
        tar.extractall(into, filter="data")
    return {
        path.relative_to(into).as_posix(): path.read_bytes()
        for path in into.rglob("*")
        if path.is_file()
    }


# --- rule 1: segments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("/a/b.txt", "a/b.txt"),
        ("///a.txt", "a.txt"),
        ("a//b.txt", "a/b.txt"),
        ("a/./b.txt", "a/b.txt"),
        ("./a/b/", "a/b"),
        ("a/b.txt", "a/b.txt"),
    ],
)
def test_leading_slash_dot_and_empty_segments_are_dropped(key: str, expected: str) -> None:
    # GIVEN a key with a leading /, . segments or empty segments
    # WHEN it is named
    # THEN those segments are gone and the rest is untouched
    assert names_for(key) == [expected]


@pytest.mark.parametrize("key", ["/", "", ".", "./.", "//./"])
def test_a_key_that_normalises_to_nothing_is_named_from_its_file_id(key: str) -> None:
    # GIVEN a key with no segment left after rule 1
    # WHEN it is named
    # THEN its name is ~ and 8 hex of its file id
    assert names_for(key) == [tag(0)]


# --- rule 2: escaping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("..", "%2E%2E"),
        ("a/../b", "a/%2E%2E/b"),
        ("../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
        ("a/..", "a/%2E%2E"),
        ("...", "..."),  # not a dot segment: kept
        ("..a/b..", "..a/b.."),
    ],
)
def test_dot_dot_is_escaped(key: str, expected: str) -> None:
    # GIVEN a key with a .. segment
    # WHEN it is named
    # THEN the segment is %2E%2E and only .. segments are touched
    assert names_for(key) == [expected]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("%2E%2E", "%252E%252E"),  # a real segment that looks like an escaped ..
        ("a/%25.txt", "a/%2525.txt"),
        ("x%00y", "x%2500y"),
        ("a\0b.txt", "a%00b.txt"),
        ("50%/a%00b", "50%/a%2500b"),
        ("bad\udc80name", "bad%ED%B2%80name"),
        ("100%20off.txt", "100%20off.txt"),  # no marker: verbatim
        ("50%.txt", "50%.txt"),
    ],
)
def test_only_segments_that_need_it_are_percent_encoded(key: str, expected: str) -> None:
    # GIVEN a segment holding NUL, a lone surrogate or one of the escape's markers
    # WHEN it is named
    # THEN that whole segment is percent-encoded (% too); other segments stay verbatim
    assert names_for(key) == [expected]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a\\b.txt", "a%5Cb.txt"),  # a separator on Windows
        ("c:/report.txt", "c%3A/report.txt"),  # a drive
        ("log.txt:stream", "log.txt%3Astream"),  # an alternate data stream
        ("x/CON", "x/%43ON"),
        ("x/con.txt", "x/%63on.txt"),
        ("NUL.tar.gz/a", "%4EUL.tar.gz/a"),
        ("x/LPT9", "x/%4CPT9"),
        ("x/COM0", "x/COM0"),  # not reserved
        ("x/CONSOLE.txt", "x/CONSOLE.txt"),
        ("x/%43ON", "x/%2543ON"),  # a literal lookalike of an escaped reserved name
    ],
)
def test_names_windows_cannot_hold_are_percent_encoded(key: str, expected: str) -> None:
    # GIVEN a segment with `\\` or `:`, or a name Windows reserves
    # WHEN it is named
    # THEN it extracts as itself on any file system a consumer uses
    assert names_for(key) == [expected]


def test_escaped_reserved_names_and_their_lookalikes_stay_distinct() -> None:
    assert names_for("CON", "%43ON", "con") == ["%43ON", "%2543ON", "%63on"]


def test_escaped_dot_dot_and_a_literal_lookalike_stay_distinct() -> None:
    # GIVEN the key .. and a key that is literally %2E%2E, in both orders
    # WHEN they are named
    # THEN both keep a name of their own without renaming
    assert names_for("..", "%2E%2E") == ["%2E%2E", "%252E%252E"]
    assert names_for("%2E%2E", "..") == ["%252E%252E", "%2E%2E"]


# --- rule 3: length -----------------------------------------------------------------------------


def test_a_1024_byte_segment_is_cut_and_tagged() -> None:
    # GIVEN a single-segment key of 1,024 bytes
    key = "k" * 1024
    # WHEN it is named
    (name,) = names_for(key)
    # THEN it is cut to 255 bytes including ~ and 8 hex of the file id
    assert utf8_len(name) == 255
    assert name == "k" * 246 + tag(0)


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_a_multi_byte_segment_is_cut_on_a_character_boundary(char: str) -> None:
    # GIVEN a segment of 2-, 3- or 4-byte characters, far over 255 bytes
    key = "dir/" + char * 200
    # WHEN it is named
    (name,) = names_for(key)
    # THEN the leaf is whole characters, as many as fit beside the tag, and at most 255 bytes
    leaf = name.split("/")[1]
    kept = (255 - 9) // len(char.encode())
    assert leaf == char * kept + tag(0)
    assert utf8_len(leaf) <= 255


def test_a_segment_of_exactly_255_bytes_is_kept() -> None:
    # GIVEN segments of exactly 255 bytes
    key = "a" * 255 + "/" + "é" * 127 + "b"
    # WHEN named
    # THEN they are kept whole
    assert names_for(key) == [key]


def test_a_cut_never_splits_an_escape() -> None:
    # GIVEN a long segment that is percent-encoded (every % becomes %25)
    key = "a" + "%25" * 150
    # WHEN it is named
    (name,) = names_for(key)
    base = name.removesuffix(tag(0))
    # THEN the cut falls between escapes
    assert base.startswith("a%2525")
    assert (len(base) - 1) % 5 == 0
    assert utf8_len(name) <= 255


def test_files_under_one_long_directory_stay_together() -> None:
    # GIVEN two files in the same directory whose name is over 255 bytes
    directory = "d" * 300
    # WHEN they are named
    first, second = names_for(f"{directory}/a.txt", f"{directory}/b.txt")
    # THEN the directory is cut and tagged from its own text, the same for both
    cut = "d" * 246 + "~" + hashlib.sha256(directory.encode()).hexdigest()[:8]
    assert first == f"{cut}/a.txt"
    assert second == f"{cut}/b.txt"


# --- rule 4: MANIFEST.json ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["MANIFEST.json", "/MANIFEST.json", "manifest.JSON"])
def test_a_file_named_like_the_manifest_is_renamed(key: str) -> None:
    # GIVEN a key naming the manifest's place at the root, in any case
    # WHEN it is named
    # THEN it gets the file id's tag
    assert names_for(key) == [key.lstrip("/") + tag(0)]


def test_a_root_directory_named_like_the_manifest_is_tagged() -> None:
    # GIVEN keys under a MANIFEST.json directory, and one deeper down
    # WHEN they are named
    names = names_for("MANIFEST.json/a", "MANIFEST.json/b", "sub/MANIFEST.json")
    # THEN the root directory is tagged from its text (files stay together); deeper is fine
    directory = "MANIFEST.json~" + hashlib.sha256(b"MANIFEST.json").hexdigest()[:8]
    assert names == [f"{directory}/a", f"{directory}/b", "sub/MANIFEST.json"]


# --- rule 5: clashes ----------------------------------------------------------------------------


def test_a_file_that_is_also_a_directory_is_renamed_in_either_order() -> None:
    # GIVEN key a/b and key a/b/c, in both window orders
    # WHEN they are named
    # THEN a/b, the file, is renamed; a/b/c is kept
    assert names_for("a/b", "a/b/c") == ["a/b" + tag(0), "a/b/c"]
    assert names_for("a/b/c", "a/b") == ["a/b/c", "a/b" + tag(1)]


def test_a_file_that_is_a_directory_but_for_case_is_renamed() -> None:
    # GIVEN key A/B and key a/b/c
    # WHEN they are named
    # THEN A/B, which would be the directory a/b on a case-insensitive disk, is renamed
    assert names_for("A/B", "a/b/c") == ["A/B" + tag(0), "a/b/c"]


def test_a_file_prefix_deeper_down_is_renamed() -> None:
    # GIVEN key a and key a/b/c/d
    # WHEN they are named
    # THEN a is renamed
    assert names_for("a/b/c/d", "a") == ["a/b/c/d", "a" + tag(1)]


def test_names_equal_but_for_case_keep_the_first_in_window_order() -> None:
    # GIVEN keys equal but for case
    # WHEN they are named
    # THEN the first in window order is kept, the others renamed
    assert names_for("A.txt", "a.txt", "a.TXT") == ["A.txt", "a.txt" + tag(1), "a.TXT" + tag(2)]
    assert names_for("a.txt", "A.txt") == ["a.txt", "A.txt" + tag(1)]


def test_names_equal_but_for_unicode_normalisation_clash() -> None:
    # GIVEN é precomposed (NFC) and decomposed (NFD): one name on macOS
    nfc, nfd = "caf\u00e9.txt", "cafe\u0301.txt"
    # WHEN they are named
    # THEN the second is renamed
    assert names_for(nfc, nfd) == [nfc, nfd + tag(1)]


def test_exact_duplicates_after_normalisation_keep_the_first() -> None:
    # GIVEN a//b and a/b (and /a/b, ./a/b)
    # WHEN they are named
    # THEN the first is a/b and the rest are renamed
    assert names_for("a//b", "a/b", "/a/b") == ["a/b", "a/b" + tag(1), "a/b" + tag(2)]


def test_a_clash_in_a_directory_renames_the_last_segment() -> None:
    # GIVEN two keys that differ only in the case of a directory
    # WHEN they are named
    # THEN the second file's last segment is tagged
    assert names_for("Dir/x.txt", "dir/x.txt") == ["Dir/x.txt", "dir/x.txt" + tag(1)]


def test_a_renamed_name_is_cut_to_fit_its_tag() -> None:
    # GIVEN two identical keys of exactly 255 bytes
    key = "z" * 255
    # WHEN they are named
    # THEN the first is kept and the second cut to make room for its tag
    assert names_for(key, key) == [key, "z" * 246 + tag(1)]


def test_a_safe_clash_free_key_is_never_renamed_even_by_a_rename() -> None:
    # GIVEN a clash whose rename would take the name of a later, safe key
    keys = ("a", "a", "a" + tag(1))
    # WHEN they are named
    names = names_for(*keys)
    # THEN the later key keeps its own name and the renamed file gets a longer tag
    assert names == ["a", "a" + tag(1, 16), "a" + tag(1)]


def test_a_replay_file_id_is_tagged_from_its_sha256() -> None:
    # GIVEN a replayed file (its id ends in #r<replay id>) clashing with the original
    original = fid("x")
    replay = original + "#r7"
    # WHEN they are named
    names = safe_member_names([(original, "k"), (replay, "k")])
    # THEN the replay's tag comes from the sha256 of its id, so it differs from the original's
    assert names == {original: "k", replay: "k~" + fid(replay)[:8]}


def test_repeated_file_ids_are_refused() -> None:
    # GIVEN a file id twice (rule 1 of §4a drops repeats before archiving)
    # WHEN named
    # THEN it is a caller's bug
    with pytest.raises(ValueError, match="distinct"):
        safe_member_names([(fid(0), "a"), (fid(0), "b")])


def test_the_result_is_in_window_order() -> None:
    # GIVEN files in some window order
    files = [(fid(n), f"k{n}") for n in (3, 1, 2)]
    # WHEN named
    # THEN the dict iterates in that order
    assert list(safe_member_names(files)) == [fid(3), fid(1), fid(2)]


# --- properties over random keys ----------------------------------------------------------------

ALPHABET = "ab/.%~AB/./é€😀\u0301ß2E5 \n\\:C"


def random_keys(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    keys = []
    for _ in range(count):
        key = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        roll = rng.random()
        if roll < 0.05:
            key += "/" + rng.choice("xé€") * rng.randint(200, 400)  # long segments
        elif roll < 0.1:
            prefix = rng.choice(["..", ".", "%2E%2E", "%25", "MANIFEST.json", "a\0b", "CON", "%43"])
            key = prefix + "/" + key
        elif roll < 0.2 and keys:
            key = rng.choice(keys).swapcase()  # a clash but for case
        keys.append(key)
    return keys


def is_safe(key: str) -> bool:
    """Safe as it is under the rules: nothing to drop, escape, cut or reserve."""
    segments = key.split("/")
    return (
        all(segment not in ("", ".", "..") for segment in segments)
        and "%" not in key
        and "~" not in key
        and "\0" not in key
        and "\\" not in key
        and ":" not in key
        and not any(reserved(segment) for segment in segments)
        and all(utf8_len(segment) <= 255 for segment in segments)
        and fold(segments[0]) != fold(MANIFEST_NAME)
    )


def reserved(segment: str) -> bool:
    stem = segment.split(".", 1)[0].upper()
    return stem in {"CON", "PRN", "AUX", "NUL"} or (
        len(stem) == 4 and stem[:3] in {"COM", "LPT"} and stem[3] in "123456789"
    )


def loose(key: str) -> str:
    """Rule 1 only: enough to compare with a key that needs no escaping, cut or tag."""
    return "/".join(segment for segment in key.split("/") if segment not in ("", "."))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_keys_give_unique_safe_names(seed: int) -> None:
    # GIVEN a few thousand random keys full of /, ., %, ~, case variants and Unicode
    keys = random_keys(seed, 3000)
    # WHEN they are named
    names = names_for(*keys)
    # THEN every name is well formed and unique, even case-insensitively
    assert_well_formed(names)
    # AND the same input gives the same output
    assert names_for(*keys) == names


@pytest.mark.parametrize("seed", [4, 5])
def test_random_safe_clash_free_keys_are_kept(seed: int) -> None:
    # GIVEN random keys
    keys = random_keys(seed, 3000)
    # WHEN they are named
    names = names_for(*keys)
    # THEN every key that was safe and clashed with no other key's file or directory is kept
    others: dict[str, int] = {}
    for key in keys:
        path = loose(key)
        for depth in range(1, path.count("/") + 2):
            prefix = fold("/".join(path.split("/")[:depth]))
            others[prefix] = others.get(prefix, 0) + 1
    kept = [
        (key, name)
        for key, name in zip(keys, names, strict=True)
        if is_safe(key) and others[fold(key)] == 1
    ]
    assert len(kept) > 200  # the property is not vacuous
    assert all(key == name for key, name in kept)


def test_names_extract_safely_one_file_each(tmp_path: Path) -> None:
    # GIVEN random keys plus every hostile shape
    hostile = ["/", "./.", "..", "../x", "a/../../b", "/etc/passwd", "a\0b", "MANIFEST.json"]
    keys = hostile + random_keys(6, 1500)
    # WHEN they are named and written to a tar that is extracted with filter="data"
    names = names_for(*keys)
    extracted = extract(names, tmp_path / "out")
    # THEN there is one file per key, under the destination, each with its own body
    assert len(extracted) == len(keys)
    assert extracted == {name: str(index).encode() for index, name in enumerate(names)}
    assert not (tmp_path / "etc").exists()
    assert not any(tmp_path.glob("b*"))


def test_a_name_equal_to_its_key_is_the_keys_own_string() -> None:
    """A window of 100,000 files keeps one string a file fewer (docs/delivery.md "Memory")."""
    # GIVEN keys built at run time (distinct objects), one of them needing a rename
    keys = ["".join(["dir/", "file-", str(n), ".csv"]) for n in range(3)] + ["DIR/file-0.csv"]
    files = [(hashlib.sha256(key.encode()).hexdigest(), key) for key in keys]
    # WHEN they are named
    names = safe_member_names(files)
    # THEN a safe key's name is that very string object, a renamed one a new string
    for (file_id, key), same in zip(files, [True, True, True, False], strict=True):
        assert (names[file_id] is key) is same
    assert names[files[3][0]].startswith("DIR/file-0.csv~")
