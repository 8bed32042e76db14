"""Round trip through fmt on generated configs: parse(fmt(tree)) gives the tree back, whatever the arguments hold."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nginx_parser import format_tree, parse_config
from nginx_parser.ir import Directive
from nginx_parser.templates import detect_template
from tests.test_parser_corpus import spliced_shape

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n not in ("include", "if"))
# Arguments with everything the tokeniser treats specially: quotes, escapes, spaces, ; { } # $ and newlines.
ARGS = st.text(alphabet=st.sampled_from(list("ab $;{}#\"'\\\t\n/~*^()")), min_size=1, max_size=10)


def directives(depth: int = 0) -> st.SearchStrategy[list[Directive]]:
    leaf = st.builds(
        lambda name, args: Directive(name=name, args=args, file="-", line=1), NAMES, st.lists(ARGS, max_size=3)
    )
    if depth >= 2:
        return st.lists(leaf, max_size=3)
    block = st.builds(
        lambda name, args, body: Directive(name=name, args=args, file="-", line=1, block=body),
        NAMES, st.lists(ARGS, max_size=2), st.deferred(lambda: directives(depth + 1)),
    )
    return st.lists(st.one_of(leaf, block), max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=directives())
def test_fmt_then_parse_gives_the_tree_back(tmp_path: Path, tree: list[Directive]) -> None:
    conf = tmp_path / "generated.conf"
    text = format_tree(tree)
    assume(detect_template(text) is None)  # "{{ }}" and friends are refused as templates, by design
    conf.write_text(text)
    parsed = parse_config(str(conf))
    assert spliced_shape(parsed.tree) == spliced_shape(tree), conf.read_text()
    # and once more: fmt(parse(x)) is a fixed point
    conf.write_text(format_tree(parsed.tree))
    assert spliced_shape(parse_config(str(conf)).tree) == spliced_shape(tree)
