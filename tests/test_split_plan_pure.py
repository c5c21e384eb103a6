"""Tables for the split kind's plan: templates, names, value discovery, targets, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.proxy.dataplane.split_routing import key_id
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.migration.kinds import split

SRC_VECTORS = {"size": 4, "distance": "Cosine"}


@pytest.mark.parametrize("template,fields,rendered", [
    ("{source_title}_{type}", ("source_title", "type"), "wiki_code"),
    ("docs-{ type }", ("type",), "docs-code"),
    ("{{x}}_{type}", ("type",), "{x}_code"),
    ("{meta.source}", ("meta.source",), "wiki"),
])
def test_parse_template(template: str, fields: tuple[str, ...], rendered: str) -> None:
    t = split.parse_template(template)
    assert t.fields == fields
    values = {"source_title": "wiki", "type": "code", "meta.source": "wiki"}
    assert t.render(values) == rendered


@pytest.mark.parametrize("template", ["plain", "{", "x_{}", "{a", "a}", "{a{b}}"])
def test_bad_templates(template: str) -> None:
    with pytest.raises(BadRequest):
        split.parse_template(template)


@pytest.mark.parametrize("by,template,fields,name", [
    (["type"], None, ("type",), "docs_code"),
    (["source_title", "type"], None, ("source_title", "type"), "docs_wiki_code"),
    ([], "{source_title}_{type}", ("source_title", "type"), "wiki_code"),
    (["type", "source_title"], "{source_title}-{type}", ("type", "source_title"), "wiki-code"),
])
def test_key_and_template(by: list[str], template: str | None, fields: tuple[str, ...], name: str) -> None:
    got, t = split.key_and_template(by, template, "docs")
    assert got == fields
    assert t.render({"source_title": "wiki", "type": "code"}) == name


def test_template_field_outside_by_is_refused() -> None:
    with pytest.raises(BadRequest, match="not in --by"):
        split.key_and_template(["type"], "{source_title}_{type}", "docs")
    with pytest.raises(BadRequest):
        split.key_and_template([], None, "docs")


@pytest.mark.parametrize("name,problem", [
    ("wiki_code", None),
    ("a" * 255, None),
    ("a" * 256, "1 to 255"),
    ("", "1 to 255"),
    ("news/text", "may not contain"),
    ("a:b", "may not contain"),
    ("tab\there", "control"),
    ("_switchyard_x", "reserved"),
    (" lead", "spaces"),
    ("..", "'.'"),
])
def test_name_problem(name: str, problem: str | None) -> None:
    got = split.name_problem(name)
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_values_from_facets_nested() -> None:
    levels = {
        "[]": [{"value": "wiki", "count": 3}, {"value": "news", "count": 2}],
        key_id(["wiki"]): [{"value": "code", "count": 1}, {"value": "text", "count": 2}],
        key_id(["news"]): [{"value": "text", "count": 2}],
    }
    found = split.values_from_facets(levels, 2, total=6, with_all_fields=5)
    assert found.keys == {key_id(["wiki", "code"]): 1, key_id(["wiki", "text"]): 2, key_id(["news", "text"]): 2}
    assert found.missing == 1 and found.method == "facet"


def test_values_from_scroll() -> None:
    payloads: list[Any] = [{"t": "a"}, {"t": "a"}, {"t": 1}, {"t": True}, {}, {"t": [1]}]
    found = split.values_from_scroll(payloads, ["t"], complete=True)
    assert found.keys == {key_id(["a"]): 2, key_id([1]): 1, key_id([True]): 1}
    assert (found.missing, found.bad_type, found.scanned, found.method) == (1, 1, 6, "scroll")


def six() -> split.Discovery:
    return split.Discovery({key_id([s, t]): 2 for s in ("wiki", "news", "docs") for t in ("text", "code")})


def test_target_specs_per_value_vectors_and_indexes() -> None:
    fields, t = split.key_and_template([], "{source_title}_{type}", "docs")
    config = {"default": {"model": "text-m"}, "values": {"code": {"model": "code-m"}}}
    schema = {"doc_id": {"data_type": "keyword", "points": 12}, "type": {"data_type": "keyword"}}
    specs = split.target_specs("docs", fields, t, six(), SRC_VECTORS, schema, config)
    assert [s.name for s in specs] == sorted(f"{s}_{t}" for s in ("wiki", "news", "docs") for t in ("text", "code"))
    by = {s.name: s for s in specs}
    assert by["wiki_text"].model == "text-m"  # per name, else per value (one-field keys), else default
    assert by["wiki_code"].model == "text-m"  # two-field key: "code" is not a target name
    assert by["wiki_code"].indexes == {"doc_id": "keyword", "type": "keyword", "source_title": "keyword"}
    config2 = {"default": {"model": "text-m"}, "values": {"news_code": {"model": "code-m"}}}
    specs2 = {s.name: s for s in split.target_specs("docs", fields, t, six(), SRC_VECTORS, {}, config2)}
    assert specs2["news_code"].model == "code-m" and specs2["docs_code"].model == "text-m"
    copied = split.target_specs("docs", fields, t, six(), SRC_VECTORS, {}, None)
    assert all(s.vectors == SRC_VECTORS and s.model is None for s in copied)
    layout = split.layout_of(fields, specs)
    assert layout.target_of({"source_title": "news", "type": "code"})[0] == "news_code"


def test_integer_and_bool_values_get_their_index_types() -> None:
    fields, t = split.key_and_template(["n", "b"], None, "c")
    found = split.Discovery({key_id([1, True]): 1})
    (spec,) = split.target_specs("c", fields, t, found, SRC_VECTORS, {}, None)
    assert spec.name == "c_1_true" and spec.indexes == {"n": "integer", "b": "bool"}


def test_problems_list_every_reason() -> None:
    fields, t = split.key_and_template(["type"], "x{type}", "docs")
    found = split.Discovery({key_id(["a/b"]): 1, key_id(["taken"]): 1, key_id(["ok"]): 1, key_id(["m"]): 1},
                            missing=2, scanned=6)
    config = {"values": {"xm": {"model": "nope"}, "xok": {"size": 8, "distance": "Cosine"}}, "default": None}
    specs = split.target_specs("docs", fields, t, found, SRC_VECTORS, {}, config)
    reasons = split.problems("docs", "docs_v1", specs, found, {"xtaken"}, {"known": object()}, SRC_VECTORS)
    text = "\n".join(reasons)
    assert "2 of 6 source points lack a split field" in text
    assert "`xa/b`: a collection name may not contain" in text
    assert "`xtaken`: a collection or alias of that name exists" in text
    assert "model 'nope' is not registered" in text
    assert "`xok`: vectors config" in text
    assert len(reasons) == 5


def test_problems_collisions_self_and_bounds() -> None:
    fields, t = split.key_and_template(["a", "b"], "{a}", "docs")
    found = split.Discovery({key_id(["x", 1]): 1, key_id(["x", 2]): 1}, complete=False, scanned=10)
    specs = split.target_specs("docs", fields, t, found, SRC_VECTORS, {}, None)
    reasons = split.problems("docs", "x", specs, found, set(), {}, SRC_VECTORS)
    assert any("render to one name" in r for r in reasons)
    assert any("may not be the source" in r for r in reasons)
    assert any("stopped at 10 points" in r for r in reasons)
    assert split.problems("docs", "s", [], split.Discovery({}), set(), {}, SRC_VECTORS) == [
        "no split values found in the source (an empty source cannot be split)"]


def test_cli_flags_make_the_split_options(tmp_path: Any) -> None:
    import argparse
    import json

    from switchyard.proxy.migration import command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps({"default": {"model": "m"}}))
    args = parser.parse_args(["migrate", "plan", "docs", "--kind", "split", "--by", "source_title", "--by", "type",
                              "--template", "{source_title}_{type}", "--vectors-config", str(vectors)])
    assert command.plan_options(args) == {"by": ["source_title", "type"], "template": "{source_title}_{type}",
                                          "vectors": {"default": {"model": "m"}}}
    assert split.option_reasons(command.plan_options(args)) == []
