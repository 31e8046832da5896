"""Label selectors: every operator, matchLabels AND matchExpressions, key/value syntax as
Kubernetes validates it, and the kubectl -l syntax used by `--selector`."""

import pytest
from pydantic import ValidationError

from gitedge.core.fleet.selectors import LabelSelector, key_problem, parse_selector, value_problem
from gitedge.errors import SelectorError

LABELS = {"env": "prod", "region": "eu-west", "ring": "canary", "gitedge.io/arch": "arm64"}


def sel(**kw):
    return LabelSelector.model_validate(kw)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"matchLabels": {"env": "prod"}}, True),
        ({"matchLabels": {"env": "dev"}}, False),
        ({"matchLabels": {"env": "prod", "ring": "stable"}}, False),
        ({"matchLabels": {"missing": ""}}, False),
        (
            {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu-west", "x"]}]},
            True,
        ),
        ({"matchExpressions": [{"key": "region", "operator": "In", "values": ["us-east"]}]}, False),
        ({"matchExpressions": [{"key": "missing", "operator": "In", "values": ["a"]}]}, False),
        (
            {"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["us-east"]}]},
            True,
        ),
        (
            {"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["eu-west"]}]},
            False,
        ),
        # NotIn matches when the label is absent, as in Kubernetes
        ({"matchExpressions": [{"key": "missing", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "ring", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "missing", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "missing", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "ring", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchExpressions": [
                    {"key": "gitedge.io/arch", "operator": "In", "values": ["arm64"]}
                ]
            },
            True,
        ),
        # matchLabels and matchExpressions are ANDed
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "ring", "operator": "In", "values": ["stable"]}],
            },
            False,
        ),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [
                    {"key": "ring", "operator": "Exists"},
                    {"key": "region", "operator": "NotIn", "values": ["us-east"]},
                ],
            },
            True,
        ),
    ],
)
def test_matches(selector, expected):
    assert sel(**selector).matches(LABELS) is expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "needs non-empty values",
        ),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn"}]}, "needs non-empty values"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "takes no values",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]},
            "takes no values",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            "Input should be",
        ),
        ({"matchExpressions": [{"key": "-bad", "operator": "Exists"}]}, "name part"),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["bad value"]}]},
            "label value",
        ),
        ({"matchLabels": {"Bad_Prefix.io/x": "v"}}, "prefix must be a DNS-1123 subdomain"),
        ({"matchLabels": {"x" * 64: "v"}}, "at most 63"),
        ({"matchLabels": {"k": "v" * 64}}, "at most 63"),
        ({"matchLabels": {"k": "-v"}}, "begin and end"),
        ({"matchLabels": {"/k": "v"}}, "prefix before '/' must not be empty"),
        ({"matchLabels": {"k": 5}}, "valid string"),
        ({"matchLabls": {"k": "v"}}, "Extra inputs"),
    ],
)
def test_rejects_malformed(selector, message):
    with pytest.raises(ValidationError, match=message):
        sel(**selector)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("a" * 63, True),
        ("example.com/" + "a" * 63, True),
        ("a.b_c-d", True),
        ("", False),
        ("a/b/c", False),
        ("UPPER.io/x", False),
        ("x/", False),
        ("a b", False),
        ("_a", False),
        ("a" * 254 + "/x", False),
    ],
)
def test_key_syntax(key, ok):
    assert (key_problem(key) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("", True), ("a", True), ("A.b-c_1", True), ("a.", False), ("é", False)]
)
def test_value_syntax(value, ok):
    assert (value_problem(value) is None) is ok


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("env=prod", LABELS, True),
        ("env==prod,ring=canary", LABELS, True),
        ("env!=prod", LABELS, False),
        ("region in (eu-west, eu-central)", LABELS, True),
        ("region notin (eu-west)", LABELS, False),
        ("ring,!legacy", LABELS, True),
        ("!ring", LABELS, False),
        ("", LABELS, True),
    ],
)
def test_parse_kubectl_syntax(text, labels, expected):
    assert parse_selector(text).matches(labels) is expected


def test_parse_kubectl_syntax_error_names_selector():
    with pytest.raises(SelectorError, match="selector 'bad key=1'"):
        parse_selector("bad key=1")
