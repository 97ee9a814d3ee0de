"""Checklist scopes over tag expressions: hypothesis draws surfaces and scopes and checks `matches` against the
expression's meaning, and that adding tags to a surface never drops an item scoped only by any/all (nor keeps
one scoped by none)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.compliance.checklists import matches
from domain.compliance.models import Scope
from domain.compliance.vocabulary import SEED

KEYS = [t.key for t in SEED]
tag_sets = st.sets(st.sampled_from(KEYS), max_size=6)
tag_lists = st.lists(st.sampled_from(KEYS), max_size=4, unique=True)


def _applies(scope: Scope, tags: set[str], **where: object) -> bool:
    return matches(scope, tags, protocol_key=where.get("protocol_key", "p"), step_key=where.get("step_key", "s"),
                   step_kind="task", roles=where.get("roles", ["technician"]),
                   subject_types=where.get("subject_types", {"sample"}))


@given(tags=tag_sets, any_=tag_lists, all_=tag_lists, none=tag_lists)
def test_a_tag_expression_means_any_and_all_and_none(tags, any_, all_, none):
    scope = Scope(any=any_, all=all_, none=none)
    expected = ((not any_ or any(t in tags for t in any_)) and all(t in tags for t in all_)
                and not any(t in tags for t in none))
    assert _applies(scope, tags) is expected


@given(tags=tag_sets, more=tag_sets, any_=tag_lists, all_=tag_lists, none=tag_lists)
def test_more_tags_never_drop_a_positive_scope_nor_keep_a_negative_one(tags, more, any_, all_, none):
    positive = Scope(any=any_, all=all_)
    if _applies(positive, tags):
        assert _applies(positive, tags | more)
    negative = Scope(none=none)
    if not _applies(negative, tags):
        assert not _applies(negative, tags | more)


@given(tags=tag_sets, protocol=st.sampled_from(["pp", "qq"]), role=st.sampled_from(["technician", "scientist"]),
       entity=st.sampled_from(["sample", "batch"]))
def test_the_other_conditions_narrow_a_scope(tags, protocol, role, entity):
    scope = Scope(protocol_key="pp", role="technician", entity_type="sample")
    got = _applies(scope, tags, protocol_key=protocol, roles=[role], subject_types={entity})
    assert got is (protocol == "pp" and role == "technician" and entity == "sample")
